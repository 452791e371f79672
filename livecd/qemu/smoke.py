"""The boot checks: boot an ISO headless, wait for the `cpushare:` milestones on the serial
console (with an order on a CPUSHARE medium, for a seller per CPU), press the power
button, and say what happened and when."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from livecd.qemu.events import ConsoleEvents
from livecd.qemu.guest import Guest
from livecd.qemu.machine import GuestConfig
from livecd.qemu.medium import make_medium
from livecd.qemu.report import (
    Report,
    console_problems,
    end_run,
    exited_early,
    power_off,
    refused,
)


def expected_events(cfg: GuestConfig) -> list[str]:
    """The live system up, strict seccomp verified, and one seller per CPU started."""
    return ["init", "secureboot", "network", "seccomp", "orders", *["seller-started"] * cfg.cpus]


def run_smoke(
    cfg: GuestConfig,
    log_path: Path,
    *,
    timeout: float = 120.0,
    expect: Sequence[str] | None = None,
    power_off_timeout: float = 30.0,
    while_up: Callable[[Guest], list[str]] | None = None,
) -> Report:
    """Boot, collect milestones until every expected event was seen (or a problem, or
    `timeout` without the next one), then power off through the ACPI power button. No
    market runs: the guest's network reaches nothing. `while_up` looks into the guest
    once every milestone came, before the power-off, and returns problems."""
    wanted = list(expect or expected_events(cfg))
    report = Report()
    with Guest(cfg, log_path) as guest:
        console = ConsoleEvents(guest)
        while wanted:
            event = console.next(timeout)
            if event is None:
                report.problems.append(_missing(guest, wanted, timeout))
                break
            if problems := _boot_problems(console, cfg):
                report.problems += problems
                break
            if event.event in wanted:
                wanted.remove(event.event)
        report.milestones = console.events
        if while_up is not None and not wanted and guest.running:
            report.problems += while_up(guest)
        power_off(guest, report, power_off_timeout)
    return report


def run_order_smoke(
    cfg: GuestConfig,
    order_file: Path,
    log_path: Path,
    workdir: Path,
    *,
    timeout: float = 120.0,
    power_off_timeout: float = 30.0,
) -> Report:
    """Boot with a CPUSHARE medium carrying `order_file` until one seller per vCPU has
    started. The order's market need not be reachable: sellers wait for it."""
    report = Report()
    medium = make_medium({order_file.name: order_file.read_bytes()}, workdir / "medium.img")
    with Guest(replace(cfg, sticks=(medium, *cfg.sticks)), log_path) as guest:
        console = ConsoleEvents(guest)
        if not console.until(
            lambda events: refused(events) or len(console.find("seller-started")) >= cfg.cpus,
            timeout,
        ):
            report.problems.append(
                f"{cfg.cpus} seller(s) did not start within {timeout:.0f} s"
                if guest.running
                else exited_early(guest)
            )
        report.milestones = console.events
        report.problems += _boot_problems(console, cfg, from_medium=True)
        end_run(guest, report, power_off_timeout)
    return report


def _boot_problems(
    console: ConsoleEvents, cfg: GuestConfig, *, from_medium: bool = False
) -> list[str]:
    return console_problems(
        console.events,
        secure_boot=cfg.secure_boot,
        market_reachable=False,
        from_medium=from_medium,
    )


def _missing(guest: Guest, wanted: Sequence[str], timeout: float) -> str:
    """Why the next milestone did not come: QEMU gone (and what it said), or the time."""
    why = "timed out" if guest.running else "QEMU exited"
    said = guest.stderr.splitlines()
    return (
        f"{why} before: {', '.join(wanted)} (waited {timeout:.0f} s; console log: "
        f"{guest.log_path})" + (f"; QEMU said: {said[-1]}" if said else "")
    )
