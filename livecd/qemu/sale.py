"""The end-to-end sale: the unchanged ISO sells its CPUs to a real market on the host.

A market runs on the host loopback with TLS; its order (for a throwaway account) names
the market as the guest dials it, `https://10.0.2.100:8443`, which a QEMU `guestfwd` rule
maps to the loopback port. The order reaches the guest on a CPUSHARE medium (or in the
order slot of a personal CD made from the ISO, as a volunteer downloads it). A batch of
Floyd-Steinberg jobs is queued before the guest boots; the run passes when every job has
an accepted result equal, bit for bit, to the Python reference, the order's account was
paid exactly what the market's ledger says its accepted results earned, and one seller ran
per vCPU at the order's nice level.

Under the market's trust model a new host's result needs a second, distinct machine to
agree with it, and a guest's sellers are one host: so an honest seller runs on the host
beside the guest, from another loopback address (`validator`), unless the run asks for
`replicas=1` (trust every seller).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from cpushare.limits import JobLimits
from cpushare.order import SellOrder, render_order
from cpushare.record import replace as replace_record
from livecd.market_process import MarketProcess
from livecd.qemu.events import ConsoleEvents, Event
from livecd.qemu.guest import Guest
from livecd.qemu.machine import Forward, GuestConfig
from livecd.qemu.medium import make_medium
from livecd.qemu.report import (
    Report,
    SaleFigures,
    console_problems,
    crash_problems,
    power_off,
    refused,
)
from livecd.sdk.dither import dither, sample_image
from livecd.toolchain import FSDITHER_SOURCE, build_job, jail_environment
from market import admin
from market.buyer import BuyerClient
from market.personal import personal_iso

GUEST_MARKET_ADDR = "10.0.2.100"
GUEST_MARKET_PORT = 8443
VOLUNTEER = "volunteer"  # the order's account: it is credited the coins
BUYER = "lab"  # the account that submits the jobs
BUYER_COINS = 1_000_000  # granted to the buyer: submitting reserves each job's worst case
VALIDATOR = "validator"  # the host-side honest seller's account
# Where the validator's connections come from: another machine, to the market.
VALIDATOR_SOURCE = "127.0.0.2"
# Small pictures: under emulation the jail's start-up, not the dithering, should dominate.
# Floyd-Steinberg runs in the jail's least memory limit, 1 MiB, on pictures up to 640x480
# (measured: scripts/bench_seller_memory.py), and these are far smaller: the jobs ask
# that, which every memory plan gives (at QEMU's default 128 MiB the plan gives 1-6 MiB:
# the less, the busier the host when the fleet plans).
JOB_MEMORY_MB = 1
JOB_LIMITS = JobLimits(
    cpu_seconds=30, wall_seconds=120, memory_bytes=JOB_MEMORY_MB << 20, output_bytes=1 << 20
)
# A lease outlives a seller killed mid-job by this much, then the job is leased again.
LEASE_SECONDS = 15.0


def job_inputs(count: int) -> list[bytes]:
    """`count` reproducible PGM pictures of slightly different sizes."""
    return [sample_image(64 + 8 * (i % 5), 48 + 4 * (i % 3), seed=i) for i in range(count)]


def build_fsdither(workdir: Path) -> bytes:
    """The Floyd-Steinberg job, built with the SDK."""
    return build_job([FSDITHER_SOURCE], workdir / "fsdither.job").read_bytes()


def guest_market(workdir: Path, *, lease_seconds: float = LEASE_SECONDS) -> MarketProcess:
    """A market (not started yet) whose certificate also names the address the guest
    dials; the same port, database and certificate across stops and starts."""
    return MarketProcess(workdir, lease_seconds=lease_seconds, cert_names=[GUEST_MARKET_ADDR])


@dataclass(frozen=True)
class SaleMarket:
    """A running `guest_market` with a volunteer's order and a buyer's account."""

    process: MarketProcess
    order: SellOrder
    buyer: BuyerClient

    @classmethod
    def open(cls, process: MarketProcess) -> SaleMarket:
        """The accounts and the order on `process`, which runs."""
        process.account(VOLUNTEER)
        url = f"https://{GUEST_MARKET_ADDR}:{GUEST_MARKET_PORT}"
        order = process.order(VOLUNTEER, public_url=url)
        buyer = process.client(BUYER)
        process.grant(BUYER, BUYER_COINS)
        return cls(process, order, buyer)

    @property
    def forward(self) -> Forward:
        """The guest's way to the market."""
        return Forward(GUEST_MARKET_ADDR, GUEST_MARKET_PORT, self.process.port)

    def order_file(self) -> bytes:
        """The volunteer's `.cpu` file."""
        return render_order(self.order).encode()

    def submit(
        self,
        program: bytes,
        inputs: Sequence[bytes],
        *,
        replicas: int | None = None,
        limits: JobLimits = JOB_LIMITS,
    ) -> list[int]:
        """Queue one job per input (adaptive replication unless `replicas`); their ids."""
        sha256 = self.buyer.upload_program(program)
        return self.buyer.submit(sha256, inputs, replicas=replicas, limits=limits.as_dict())

    def done(self) -> dict[int, dict[str, object]]:
        """The buyer's finished jobs with an accepted result, by id."""
        return {int(str(job["id"])): job for job in self.buyer.jobs("done")}

    def coins(self) -> dict[str, float]:
        """Every account's balance, as the market's operator sees it."""
        return {
            str(a["name"]): float(str(a["coins"])) for a in admin.list_accounts(self.process.db)
        }

    @contextlib.contextmanager
    def validator(self, workdir: Path) -> Iterator[None]:
        """An honest seller on the host, from VALIDATOR_SOURCE: a second machine whose
        results the guest's agree with (its console in workdir/validator.console)."""
        if VALIDATOR not in self.coins():
            self.process.account(VALIDATOR)
        order = workdir / "validator.cpu"
        self.process.order(VALIDATOR, order)
        env = {**jail_environment(), **os.environ, "CPUSHARE_SOURCE_ADDRESS": VALIDATOR_SOURCE}
        argv = [sys.executable, "-m", "cpushare.seller", str(order), "--wait", "5"]
        with open(workdir / "validator.console", "wb") as console:
            seller = subprocess.Popen(argv, stdout=console, stderr=subprocess.STDOUT, env=env)
        try:
            yield
        finally:
            seller.terminate()
            try:
                seller.wait(10)
            except subprocess.TimeoutExpired:
                seller.kill()
                seller.wait()


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


def result_problems(
    market: SaleMarket, inputs: Mapping[int, bytes], done: Mapping[int, object]
) -> list[str]:
    """Jobs without an accepted result, or whose result is not the reference's bytes."""
    problems = []
    for job, pgm in inputs.items():
        if job not in done:
            problems.append(f"job {job} has no accepted result")
        elif market.buyer.output(job) != dither(pgm):
            problems.append(f"job {job}: the accepted result differs from the Python reference")
    return problems


def coin_problems(market: SaleMarket, done: Mapping[int, Mapping[str, object]]) -> list[str]:
    """The volunteer's account holds exactly what the ledger paid its accepted results of
    the `done` jobs, each at least one millicoin and at most its own CPU claim; the buyer
    paid and earned nothing; the books balance."""
    with contextlib.closing(sqlite3.connect(market.process.db)) as conn:
        paid = conn.execute(
            "SELECT r.job_id, r.cpu_seconds, t.millicoins FROM results r "
            "JOIN orders o ON o.id = r.order_id JOIN accounts a ON a.id = o.account_id "
            "LEFT JOIN transfers t ON t.result_id = r.id AND t.kind = 'pay' "
            "WHERE a.name = ? AND r.verdict = 'accepted'",
            (VOLUNTEER,),
        ).fetchall()
    coins = market.coins()
    problems = []
    for job, claim, millicoins in paid:
        if job not in done:
            continue
        if millicoins is None or not 1 <= millicoins <= max(1, round(1000 * claim)):
            problems.append(
                f"job {job}: the volunteer was paid {millicoins} millicoins "
                f"for a result claiming {claim:.3f} CPU seconds"
            )
    earned = sum(m or 0 for job, _, m in paid if job in done)
    if round(1000 * coins.get(VOLUNTEER, 0.0)) != earned:
        problems.append(
            f"account {VOLUNTEER} holds {coins.get(VOLUNTEER, 0.0):.3f} coins, "
            f"not the {earned / 1000:.3f} its accepted results earned"
        )
    if coins.get(BUYER, 0.0) > BUYER_COINS:
        problems.append(f"the buyer's account {BUYER} was credited {coins[BUYER]:.3f} coins")
    problems += admin.check_ledger(market.process.db)
    return problems


def seller_problems(console: ConsoleEvents, cpus: int, order: SellOrder) -> list[str]:
    """One seller per vCPU for `order`, each at the order's nice level."""
    started = console.find("seller-started")
    problems = []
    for e in started:
        if e.fields.get("order") != order.order_id:
            problems.append(f"a seller started for order {e.fields.get('order')}, not ours")
        if e.fields.get("nice") != str(order.nice):
            problems.append(
                f"the seller on cpu {e.fields.get('cpu')} runs at nice "
                f"{e.fields.get('nice')}, not {order.nice}"
            )
    on_cpus = sorted({e.fields.get("cpu", "?") for e in started})
    wanted = [str(cpu) for cpu in range(cpus)]
    if on_cpus != wanted:
        problems.append(f"sellers ran on cpus {on_cpus or 'none'}, not one on each of {wanted}")
    return problems


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
            report.problems += crash_problems(guest)
            if not guest.running:
                report.problems.append(f"QEMU exited early: {guest.stderr or 'no message'}")
            elif while_up is not None:
                report.problems += while_up(guest)
            power_off(guest, report, power_off_timeout)
    if report.problems:
        report.problems.append(f"console log: {log_path}")
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
