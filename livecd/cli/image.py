"""`livecd build`, `livecd boot` and `livecd smoke`: making the ISO and booting it."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import click

from livecd.build import BuildOptions, build
from livecd.cli import main
from livecd.debian import HOST_SOURCES
from livecd.files import cache_home
from livecd.profile import COMPRESSIONS, load_profile
from livecd.progress import Progress
from livecd.qemu import NIC_MODELS, Firmware, GuestConfig, Media, qemu_argv
from livecd.rootfs import OVERLAYS
from livecd.smoke import format_table, run_smoke
from livecd.templates import TEMPLATES

T = TypeVar("T")


class TerminalProgress(Progress):
    """Stages as lines with their timings on stderr, long loops as progress bars."""

    def finished(self, name: str, seconds: float) -> None:
        click.echo(f"  {name:<20} {seconds:6.2f} s", err=True)

    def each(self, items: Sequence[T], label: str, show: Callable[[T], str]) -> Iterable[T]:
        if not items:
            return

        def show_item(item: T | None) -> str | None:
            return show(item) if item is not None else None

        with click.progressbar(
            items,
            label=f"  {label}",
            file=sys.stderr,
            item_show_func=show_item,
        ) as bar:
            yield from bar


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


@main.command("build")
@click.option(
    "-p",
    "--profile",
    "profile_path",
    type=click.Path(path_type=Path),
    help="Profile (TOML) to build from. Default: the profile shipped with livecd.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    help="Where to write the ISO. Default: the profile's output name, here.",
)
@click.option(
    "--cache",
    type=click.Path(path_type=Path),
    default=None,
    help="Cache of packages and apt state. Default: $XDG_CACHE_HOME/livecd.",
)
@click.option(
    "--apt-sources",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="apt sources file(s) to take the Debian mirror from, instead of the "
    "machine's /etc/apt configuration. Repeatable.",
)
@click.option(
    "--refresh",
    is_flag=True,
    help="Fetch the Debian package lists again (newer packages, security fixes).",
)
@click.option(
    "--compression",
    type=click.Choice(COMPRESSIONS),
    help="Initramfs compression (overrides the profile).",
)
@click.option("--timeout", type=int, help="Boot menu timeout in seconds (overrides the profile).")
@click.option("--cmdline", help="Kernel command line of every boot entry (overrides the profile).")
@click.option(
    "--order",
    "orders",
    multiple=True,
    metavar="FILE|URL",
    help="A .cpu sell order to build into the CD (/etc/cpushare); repeatable. Replaces the "
    "profile's orders.",
)
@click.option(
    "--templates",
    type=click.Path(file_okay=False, path_type=Path),
    default=TEMPLATES,
    help="Jinja templates folder (rootfs/ and iso/). Default: the repository's templates/.",
)
@click.option(
    "--overlays",
    type=click.Path(file_okay=False, path_type=Path),
    default=OVERLAYS,
    help="Files copied verbatim into the root filesystem. Default: the repository's overlays/.",
)
@click.option(
    "--source-date-epoch",
    type=int,
    help="Timestamp for everything in the image. Default: $SOURCE_DATE_EPOCH, "
    "else the last commit's time.",
)
@click.option(
    "--lock",
    "lock_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Build from exactly the packages of this lock file (see `livecd lock`).",
)
def build_command(
    profile_path: Path | None,
    output: Path | None,
    cache: Path | None,
    apt_sources: tuple[Path, ...],
    refresh: bool,
    compression: str | None,
    timeout: int | None,
    cmdline: str | None,
    orders: tuple[str, ...],
    templates: Path,
    overlays: Path,
    source_date_epoch: int | None,
    lock_path: Path | None,
) -> None:
    """Build the live CD ISO.

    Downloads the Debian packages the profile names (with apt, from the machine's
    configured mirrors, into a private cache: no root needed, the host's apt state is not
    touched), checks the kernel has CONFIG_SECCOMP=y, assembles the root filesystem
    (busybox, driver modules, overlays/, rendered templates/) into an initramfs, and writes
    a hybrid ISO that boots from CD or USB disk under BIOS and UEFI with Secure Boot.
    A second build runs from the cache without network.

    \b
    Examples:
      livecd build                                  the default profile
      livecd build -o /tmp/test.iso --timeout 0     no menu delay
      livecd build --profile my.toml --refresh      another profile, newest packages
      livecd build --lock libcaca-cpushare-livecd.lock.json   exactly the locked packages
    """
    profile = load_profile(profile_path).with_overrides(
        compression=compression, timeout=timeout, cmdline=cmdline
    )
    out = output or Path(profile.output)
    start = time.monotonic()
    click.echo(f"livecd: building {out} from profile {profile.name}", err=True)
    result = build(
        BuildOptions(
            profile=profile,
            output=out,
            cache=cache or cache_home(),
            apt_sources=apt_sources or HOST_SOURCES,
            refresh=refresh,
            source_date_epoch=source_date_epoch,
            templates=templates,
            overlays=overlays,
            orders=orders,
            lock=lock_path,
        ),
        TerminalProgress(),
    )
    click.echo(
        f"livecd: wrote {result.iso} ({_mib(result.size)}, initramfs "
        f"{_mib(result.initramfs_size)} from {_mib(result.rootfs_size)}, kernel "
        f"{result.kernel_release}) in {time.monotonic() - start:.1f} s\n"
        f"livecd: sha256 {result.sha256}",
        err=True,
    )


def _guest_options(f: Callable[..., None]) -> Callable[..., None]:
    options = [
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
            type=click.IntRange(128),
            default=512,
            show_default=True,
            help="Guest memory in MiB.",
        ),
        click.option(
            "--nic",
            type=click.Choice(NIC_MODELS),
            default="e1000",
            show_default=True,
            help="Emulated network card.",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


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
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
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
      livecd smoke libcaca-cpushare-livecd.formats.iso
      livecd smoke ISO --firmware uefi --secure-boot --media usb --cpus 2
      livecd smoke ISO --order my.cpu --cpus 2
      livecd smoke ISO --market --cpus 2 --jobs 12
    """
    cfg = _guest(iso, firmware, secure_boot, media, cpus, memory, nic)
    log = log_path or iso.with_name(iso.name + ".serial.log")
    mode = f"{firmware}{' secure-boot' if secure_boot else ''} {media}, {cpus} CPU, {nic}"
    click.echo(f"livecd: smoke-booting {iso} ({mode})", err=True)
    if order_file is not None or with_market:
        from livecd.e2e import format_report, result_json, smoke_with_orders

        sale = smoke_with_orders(
            cfg, log, order_file=order_file, market=with_market, jobs=jobs, timeout=timeout
        )
        if as_json:
            click.echo(json.dumps(result_json(sale), indent=2))
        else:
            format_report(sale, click.echo)
        for problem in sale.problems:
            click.echo(f"livecd: error: {problem}", err=True)
        raise SystemExit(0 if sale.ok else 1)
    result = run_smoke(cfg, log, timeout=timeout)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "ok": result.ok,
                    "problems": result.problems,
                    "wall_seconds": result.wall_seconds,
                    "powered_off": result.powered_off,
                    "milestones": [
                        {"event": m.event, "fields": m.fields, "wall": m.host_seconds}
                        for m in result.milestones
                    ],
                },
                indent=2,
            )
        )
    else:
        click.echo(format_table(result))
    for problem in result.problems:
        click.echo(f"livecd: error: {problem}", err=True)
    raise SystemExit(0 if result.ok else 1)
