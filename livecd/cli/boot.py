"""`livecd boot` and `livecd smoke`: the ISO in a QEMU window, or booted headless and checked."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import tempfile
from dataclasses import replace
from pathlib import Path

import click

from livecd.cli import main
from livecd.cli.options import json_option, options
from livecd.errors import UserError
from livecd.orders import check_order_file
from livecd.qemu.machine import (
    NIC_MODELS,
    SMALLEST_MEMORY_MB,
    Firmware,
    GuestConfig,
    Media,
    qemu_argv,
)
from livecd.qemu.report import Report, format_report, report_json
from livecd.qemu.smoke import run_order_smoke, run_smoke

# The guest QEMU boots (`boot` and `smoke`); `_guest` makes it of them.
_guest_options = options(
    click.option(
        "--firmware",
        type=click.Choice(["bios", "uefi"]),
        default="bios",
        show_default=True,
        help="PC BIOS (SeaBIOS) or UEFI (OVMF).",
    ),
    click.option(
        "--secure-boot",
        is_flag=True,
        help="UEFI with Microsoft's keys enrolled and Secure Boot enforced.",
    ),
    click.option(
        "--media",
        type=click.Choice(["cdrom", "usb"]),
        default="cdrom",
        show_default=True,
        help="Boot the ISO as a CD or as a USB disk.",
    ),
    click.option("--cpus", type=click.IntRange(1, 64), default=1, show_default=True),
    click.option(
        "--memory",
        type=click.IntRange(SMALLEST_MEMORY_MB),
        default=512,
        show_default=True,
        help=f"Guest memory in MiB (below {SMALLEST_MEMORY_MB} the kernel cannot unpack the "
        "initramfs).",
    ),
    click.option(
        "--nic",
        type=click.Choice(NIC_MODELS),
        default="e1000",
        show_default=True,
        help="Emulated network card.",
    ),
)


def _guest(
    iso: Path, firmware: Firmware, secure_boot: bool, media: Media, cpus: int, memory: int, nic: str
) -> GuestConfig:
    """The guest the `_guest_options` describe."""
    return GuestConfig(
        iso=iso,
        firmware=firmware,
        secure_boot=secure_boot,
        media=media,
        cpus=cpus,
        memory_mb=memory,
        nic=nic,
    )


@main.command("boot")
@click.argument("iso", type=click.Path(path_type=Path))
@_guest_options
def boot_command(
    iso: Path, firmware: Firmware, secure_boot: bool, media: Media, cpus: int, memory: int, nic: str
) -> None:
    """Boot ISO in QEMU for a person, like `qemu -cdrom ISO`.

    Opens a window where there is a display; otherwise the serial console is this
    terminal (quit with Ctrl-A X). The guest's network is QEMU's user mode, restricted:
    it reaches nothing outside.
    """
    cfg = replace(
        _guest(iso, firmware, secure_boot, media, cpus, memory, nic),
        headless=False,
        extra=() if os.environ.get("DISPLAY") else ("-nographic",),
    )
    with tempfile.TemporaryDirectory(prefix="livecd-boot-") as tmp:
        argv = qemu_argv(cfg, Path(tmp))
        click.echo(f"livecd: {shlex.join(argv)}", err=True)
        raise SystemExit(subprocess.call(argv))


@main.command("smoke")
@click.argument("iso", type=click.Path(path_type=Path))
@_guest_options
@click.option(
    "--timeout",
    type=float,
    default=120.0,
    show_default=True,
    help="Seconds to wait for each milestone (times $LIVECD_TIMEOUT_FACTOR).",
)
@click.option(
    "--log",
    "log_path",
    type=click.Path(path_type=Path),
    help="Where to keep the serial console log. Default: ISO.serial.log",
)
@json_option
@click.option(
    "--order",
    "order_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Attach a CPUSHARE medium carrying this .cpu order; wait for a seller per CPU.",
)
@click.option(
    "--market",
    "with_market",
    is_flag=True,
    help="End to end: a throwaway market on the host loopback, its order on a CPUSHARE "
    "medium, a batch of Floyd-Steinberg jobs; passes when every result is correct.",
)
@click.option(
    "--jobs",
    type=click.IntRange(1, 1000),
    default=6,
    show_default=True,
    help="Jobs in the --market batch.",
)
@click.option(
    "--job-memory",
    type=click.IntRange(1, 4096),
    default=None,
    metavar="MIB",
    help="The memory limit each --market job asks for, in MiB. Default: the sale's own "
    "(livecd/qemu/sale_market.py JOB_MEMORY_MB), which a 128 MiB machine's plan gives.",
)
def smoke_command(
    iso: Path,
    firmware: Firmware,
    secure_boot: bool,
    media: Media,
    cpus: int,
    memory: int,
    nic: str,
    timeout: float,
    log_path: Path | None,
    as_json: bool,
    order_file: Path | None,
    with_market: bool,
    jobs: int,
    job_memory: int | None,
) -> None:
    """Boot ISO headless and check that the live system comes up.

    Captures the serial console, waits for the `cpushare:` lines (init, secureboot,
    network, seccomp verified, orders, one seller-started per CPU), presses the ACPI
    power button and checks the guest powers off.
    Prints the guest uptime and wall time at each milestone. Exits 0 only when every
    expected line appeared and none reported an error.

    With --market, the whole sale: the market's address is mapped into the guest
    (https://10.0.2.100:8443, nothing else reachable), the jobs are queued, the ISO boots
    unchanged, and the run passes only when every job's accepted result equals the Python
    reference, the order's account was credited the coins and one seller ran per CPU at
    the order's nice level. It prints the guest uptime at the first result and the jobs
    per minute. --timeout is then the wait for all the results.

    \b
    Examples:
      livecd smoke libcaca-cpushare-livecd.iso
      livecd smoke ISO --firmware uefi --secure-boot --media usb --cpus 2
      livecd smoke ISO --order my.cpu --cpus 2
      livecd smoke ISO --market --cpus 2 --jobs 12
    """
    if job_memory is not None and not with_market:
        raise UserError("--job-memory is the --market jobs' limit: give --market too")
    if order_file is not None and with_market:
        raise UserError("give --order or --market, not both: --market issues its own order")
    cfg = _guest(iso, firmware, secure_boot, media, cpus, memory, nic)
    log = log_path or iso.with_name(iso.name + ".serial.log")
    mode = f"{firmware}{' secure-boot' if secure_boot else ''} {media}, {cpus} CPU, {nic}"
    click.echo(f"livecd: smoke-booting {iso} ({mode})", err=True)
    report = _smoke(
        cfg,
        log,
        order_file=order_file,
        with_market=with_market,
        jobs=jobs,
        job_memory=job_memory,
        timeout=timeout,
    )
    if as_json:
        click.echo(json.dumps(report_json(report), indent=2))
    else:
        format_report(report, click.echo)
    for problem in report.problems:
        click.echo(f"livecd: error: {problem}", err=True)
    raise SystemExit(0 if report.ok else 1)


def _smoke(
    cfg: GuestConfig,
    log: Path,
    *,
    order_file: Path | None,
    with_market: bool,
    jobs: int,
    job_memory: int | None,
    timeout: float,
) -> Report:
    """The boot checks, with an order on a medium, or the whole sale in a scratch
    directory."""
    if order_file is None and not with_market:
        return run_smoke(cfg, log, timeout=timeout)
    with tempfile.TemporaryDirectory(prefix="livecd-smoke-") as tmp:
        if order_file is not None:
            check_order_file(order_file)
            return run_order_smoke(cfg, order_file, log, Path(tmp), timeout=timeout)
        # The sale needs the market and the SDK: imported only for it.
        from livecd.qemu.sale import run_sale
        from livecd.qemu.sale_market import JOB_LIMITS

        memory = JOB_LIMITS.memory_bytes if job_memory is None else job_memory << 20
        return run_sale(cfg, log, Path(tmp), jobs=jobs, job_memory=memory, timeout=timeout)
