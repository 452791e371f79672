"""The end-to-end sale: the unchanged ISO sells its CPUs to a real market on the host
(`sale_market`). The order reaches the guest on a CPUSHARE medium (or in the order slot
of a personal CD made from the ISO, as a volunteer downloads it). A batch of jobs is
queued before the guest boots; the run follows the console until every job has an
accepted result, then makes the checks of `sale_checks`. A guest's sellers are one host:
the market's honest seller on the host (`validator`) runs beside the guest unless the run
asks for `replicas=1` (trust every seller).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Literal

from cpushare.record import replace as replace_record
from livecd.qemu.events import ConsoleEvents, Event
from livecd.qemu.guest import Guest
from livecd.qemu.machine import GuestConfig
from livecd.qemu.medium import make_medium
from livecd.qemu.report import (
    Report,
    SaleFigures,
    console_problems,
    end_run,
    exited_early,
    refused,
)
from livecd.qemu.sale_checks import coin_problems, result_problems, seller_problems
from livecd.qemu.sale_market import (
    JOB_LIMITS,
    VOLUNTEER,
    SaleMarket,
    build_fsdither,
    guest_market,
    job_inputs,
)
from market.personal import personal_iso


def wait_for_results(
    console: ConsoleEvents, market: SaleMarket, jobs: Sequence[int], timeout: float
) -> dict[int, dict[str, object]]:
    """Follow the console until every job in `jobs` has an accepted result (or the
    timeout, or the guest is gone or refuses to sell); the finished jobs."""
    done: dict[int, dict[str, object]] = {}

    def finished(events: list[Event]) -> bool:
        done.update(market.done())
        return set(jobs) <= set(done) or refused(events)

    console.until(finished, timeout)
    return {job: info for job, info in done.items() if job in jobs}


def run_sale(
    cfg: GuestConfig,
    log_path: Path,
    workdir: Path,
    *,
    jobs: int = 6,
    timeout: float = 300.0,
    power_off_timeout: float = 30.0,
    while_up: Callable[[Guest], list[str]] | None = None,
    replicas: int | None = None,
    job_memory: int = JOB_LIMITS.memory_bytes,
    order_on: Literal["stick", "cd"] = "stick",
) -> Report:
    """The whole run: market, order, medium, jobs, then boot `cfg` (its own disks
    stay attached beside the medium) until every job is accepted; then the checks.
    `order_on`: where the guest finds its order, a CPUSHARE stick, or the CD's order
    slot (the volunteer's personal CD, written into `workdir` from `cfg.iso`, booted
    with no stick: `qemu -cdrom` at QEMU's defaults has no USB at all).
    `while_up` looks into the guest before it is powered off and returns problems.
    `replicas=1` trusts the guest alone; otherwise the validator runs beside it.
    `job_memory`: the memory limit the jobs ask for (`memory_bytes`)."""
    sale = SaleFigures(jobs=jobs, account=VOLUNTEER)
    report = Report(sale=sale)
    inputs = job_inputs(jobs)
    program = build_fsdither(workdir)
    with guest_market(workdir / "market") as process:
        market = SaleMarket.open(process.start())
        limits = replace_record(JOB_LIMITS, memory_bytes=job_memory)
        ids = market.submit(program, inputs, replicas=replicas, limits=limits)
        by_job = dict(zip(ids, inputs, strict=True))
        guest_cfg = with_order(cfg, market, workdir, order_on)
        alongside = contextlib.nullcontext() if replicas == 1 else market.validator(workdir)
        with alongside, Guest(guest_cfg, log_path) as guest:
            console = ConsoleEvents(guest)
            done = wait_for_results(console, market, list(by_job), timeout)
            report.milestones = console.events
            _measure(sale, console, done, market)
            report.problems += result_problems(market, by_job, done)
            report.problems += coin_problems(market, done)
            report.problems += seller_problems(console, cfg.cpus, market.order)
            report.problems += console_problems(
                console.events, secure_boot=cfg.secure_boot, from_medium=order_on == "stick"
            )
            if not guest.running:
                report.problems.append(exited_early(guest))
            elif while_up is not None:
                report.problems += while_up(guest)
            end_run(guest, report, power_off_timeout)
    return report


def with_order(
    cfg: GuestConfig, market: SaleMarket, workdir: Path, order_on: Literal["stick", "cd"]
) -> GuestConfig:
    """`cfg` with the market's way in and the volunteer's order: on a stick beside its
    own, or in the order slot of a personal copy of its ISO."""
    forwards = (*cfg.forwards, market.forward)
    if order_on == "cd":
        personal = workdir / "personal.iso"
        with personal.open("wb") as out:
            for chunk in personal_iso(cfg.iso, market.order_file().decode()).chunks():
                out.write(chunk)
        return replace(cfg, iso=personal, forwards=forwards)
    medium = make_medium({f"{VOLUNTEER}.cpu": market.order_file()}, workdir / "medium.img")
    return replace(cfg, sticks=(medium, *cfg.sticks), forwards=forwards)


def _measure(
    sale: SaleFigures,
    console: ConsoleEvents,
    done: Mapping[int, Mapping[str, object]],
    market: SaleMarket,
) -> None:
    """Guest uptime at the first and last accepted result, jobs per minute from the
    first lease to the last accepted result, and the coins the volunteer holds."""
    sale.accepted = len(done)
    sale.coins = market.coins().get(VOLUNTEER, 0.0)
    finished = sorted(float(str(job["finished"])) for job in done.values())
    if not finished:
        return
    sale.first_result_uptime = console.uptime_at(finished[0])
    sale.last_result_uptime = console.uptime_at(finished[-1])
    leased = console.find("job-leased")
    if leased:
        span = finished[-1] - console.wall_of(leased[0])
        sale.jobs_per_minute = 60 * len(finished) / span if span > 0 else None
