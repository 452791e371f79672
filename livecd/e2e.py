"""The end-to-end smoke: the unchanged ISO sells its CPUs to a real market on the host.

A throwaway market runs on the host loopback with TLS; its order (for a throwaway
account) names the market as the guest dials it, `https://10.0.2.100:8443`, which a QEMU
`guestfwd` rule maps to the loopback port. The order reaches the guest on a `CPUSHARE`
FAT medium attached as a removable USB disk. A batch of Floyd-Steinberg jobs is queued
before the guest boots; the run passes when every job has an accepted result equal, bit
for bit, to the Python reference, the order's account was credited exactly the CPU
seconds the market accepted, and one seller ran per vCPU at the order's nice level.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import cast

from cpushare.console import parse_line
from cpushare.order import SellOrder
from livecd.errors import UserError
from livecd.formats.fat import make_fat_image
from livecd.market_process import MarketProcess, free_port
from livecd.orders import check_order_file, render_order, write_atomically
from livecd.qemu import Forward, Guest, GuestConfig, timeout_factor
from livecd.sdk.dither import dither, sample_image
from livecd.smoke import MARKET_ABSENT, power_off
from livecd.smoke import Milestone as Event
from livecd.toolchain import FSDITHER_SOURCE, build_job
from market import admin
from market.buyer import BuyerClient
from market.tls import self_signed

GUEST_MARKET_ADDR = "10.0.2.100"
GUEST_MARKET_PORT = 8443
MEDIUM_LABEL = "CPUSHARE"
VOLUNTEER = "volunteer"  # the order's account: it is credited the coins
BUYER = "lab"  # the account that submits the jobs
# Small pictures: under emulation the jail's start-up, not the dithering, should dominate.
JOB_LIMITS: dict[str, int | float] = {
    "cpu_seconds": 30,
    "memory_bytes": 32 << 20,
    "output_bytes": 1 << 20,
    "wall_seconds": 120,
}
# A lease outlives a seller killed mid-job by this much, then the job is leased again.
LEASE_SECONDS = 15.0
# Fixed so that the medium is the same bytes on every run.
MEDIUM_VOLUME_ID = 0x43505553
MEDIUM_MTIME = 1_700_000_000


def job_inputs(count: int) -> list[bytes]:
    """`count` reproducible PGM pictures of slightly different sizes."""
    return [sample_image(64 + 8 * (i % 5), 48 + 4 * (i % 3), seed=i) for i in range(count)]


def build_fsdither(workdir: Path) -> bytes:
    """The Floyd-Steinberg job, built with the SDK."""
    return build_job([FSDITHER_SOURCE], workdir / "fsdither.job").read_bytes()


def make_medium(files: Mapping[str, bytes], out: Path) -> Path:
    """A FAT image labelled CPUSHARE holding `files` (name -> bytes) at its root."""
    image = make_fat_image(
        files, label=MEDIUM_LABEL, volume_id=MEDIUM_VOLUME_ID, mtime=MEDIUM_MTIME
    )
    write_atomically(out, image, 0o644)
    return out


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class ThrowawayMarket:
    """A real market on a host loopback port, with TLS, a volunteer's order and a buyer.

    `start()` the first time creates the certificate, the accounts and the order;
    `stop()` and `start()` again stop and restart the same market (same port, database
    and certificate), as a market that is down for a while.
    """

    def __init__(self, workdir: Path, *, lease_seconds: float = LEASE_SECONDS) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.cert = workdir / "market-cert.pem"
        key = workdir / "market-key.pem"
        cert_pem, key_pem = self_signed([GUEST_MARKET_ADDR, "127.0.0.1"])
        write_atomically(self.cert, cert_pem, 0o644)
        write_atomically(key, key_pem, 0o600)
        self.process = MarketProcess(
            workdir, port=free_port(), lease_seconds=lease_seconds, tls=(self.cert, key)
        )
        self._order: SellOrder | None = None
        self._buyer: BuyerClient | None = None

    @property
    def url(self) -> str:
        """The market as the guest dials it."""
        return f"https://{GUEST_MARKET_ADDR}:{GUEST_MARKET_PORT}"

    @property
    def forward(self) -> Forward:
        return Forward(GUEST_MARKET_ADDR, GUEST_MARKET_PORT, self.process.port)

    @property
    def order(self) -> SellOrder:
        if self._order is None:
            raise RuntimeError("start the market first: it issues the order")
        return self._order

    @property
    def buyer(self) -> BuyerClient:
        if self._buyer is None:
            raise RuntimeError("start the market first: it creates the buyer's account")
        return self._buyer

    def order_file(self) -> bytes:
        """The volunteer's `.cpu` file."""
        return render_order(self.order).encode()

    def start(self) -> ThrowawayMarket:
        self.process.start()
        if self._order is None:
            self.process.account(VOLUNTEER)
            api_key = self.process.account(BUYER).api_key
            self._order = admin.new_order(
                self.process.db, VOLUNTEER, lambda order: None, public_url=self.url
            )
            self._buyer = BuyerClient(self.process.url, api_key, cacert=self.cert)
        return self

    def stop(self) -> None:
        self.process.stop()

    def __enter__(self) -> ThrowawayMarket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.stop(kill=True)

    def submit(self, program: bytes, inputs: Sequence[bytes]) -> list[int]:
        """Queue one job per input; their ids, in order."""
        sha256 = self.buyer.upload_program(program)
        return self.buyer.submit(sha256, inputs, limits=JOB_LIMITS)

    def done(self) -> dict[int, dict[str, object]]:
        """The buyer's finished jobs with an accepted result, by id."""
        return {int(str(job["id"])): job for job in self.buyer.jobs("done")}

    def coins(self) -> dict[str, float]:
        """Every account's coins, as the operator sees them (an account sees only its own)."""
        return {
            str(row["name"]): cast(float, row["coins"])
            for row in admin.list_accounts(self.process.db)
        }


class ConsoleWatch:
    """The guest's `cpushare:` lines as events, and the guest clock seen from the host."""

    def __init__(self, guest: Guest) -> None:
        self.guest = guest
        self.events: list[Event] = []
        self.qemu_started_wall = time.time() - guest.elapsed

    def pump(self, timeout: float) -> Event | None:
        """The next event, or None when `timeout` passed or the guest is gone."""
        line = self.guest.wait_for(lambda text: parse_line(text) is not None, timeout)
        if line is None:
            return None
        fields = parse_line(line.text) or {}
        event = Event(fields.get("event", "?"), fields, line.host_seconds)
        self.events.append(event)
        return event

    def wait(self, name: str, timeout: float, *, skip: int = 0, **fields: str) -> Event | None:
        """Event `name` with these `fields`, the first after `skip` such events, already
        seen or within `timeout`."""
        deadline = time.monotonic() + timeout * timeout_factor()
        while len(found := self.find(name, **fields)) <= skip:
            left = deadline - time.monotonic()
            if left <= 0 or not self.guest.running:
                return None
            self.pump(min(left, 1.0) / timeout_factor())
        return found[skip]

    def find(self, name: str, **fields: str) -> list[Event]:
        return [e for e in self.events if _matches(e, name, fields)]

    def uptime_at(self, wall: float) -> float | None:
        """The guest's uptime at host wall-clock time `wall`. A line reaches the host
        after the guest printed it, never before: the smallest gap between the host's
        reading time and the uptime the line carries is the best estimate of when the
        guest's clock started."""
        gaps = [e.host_seconds - e.uptime for e in self.events if e.uptime is not None]
        if not gaps:
            return None
        return wall - self.qemu_started_wall - min(gaps)

    def wall_of(self, event: Event) -> float:
        return self.qemu_started_wall + event.host_seconds


def _matches(event: Event, name: str, fields: Mapping[str, str]) -> bool:
    return event.event == name and all(event.fields.get(k) == v for k, v in fields.items())


@dataclass
class MarketSmokeResult:
    events: list[Event] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    jobs: int = 0
    accepted: int = 0
    first_result_uptime: float | None = None
    last_result_uptime: float | None = None
    jobs_per_minute: float | None = None
    coins: float = 0.0
    wall_seconds: float = 0.0
    powered_off: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems

    def first(self, name: str) -> Event | None:
        return next((e for e in self.events if e.event == name), None)


def wait_for_results(
    watch: ConsoleWatch, market: ThrowawayMarket, jobs: Sequence[int], timeout: float
) -> dict[int, dict[str, object]]:
    """Follow the console until every job in `jobs` has an accepted result (or the
    timeout, or the guest is gone or refuses to sell); the finished jobs."""
    deadline = time.monotonic() + timeout * timeout_factor()
    done = market.done()
    while not set(jobs) <= set(done) and time.monotonic() < deadline:
        if not watch.guest.running or _refused(watch.events):
            break
        watch.pump(0.5 / timeout_factor())
        done = market.done()
    return {job: info for job, info in done.items() if job in jobs}


def result_problems(
    market: ThrowawayMarket, inputs: Mapping[int, bytes], done: Mapping[int, object]
) -> list[str]:
    """Jobs without an accepted result, or whose result is not the reference's bytes."""
    problems = []
    for job, pgm in inputs.items():
        if job not in done:
            problems.append(f"job {job} has no accepted result")
        elif market.buyer.output(job) != dither(pgm):
            problems.append(f"job {job}: the accepted result differs from the Python reference")
    return problems


def coin_problems(market: ThrowawayMarket, done: Mapping[int, Mapping[str, object]]) -> list[str]:
    """The volunteer's account holds one millicoin per accepted CPU millisecond (one at
    least per job); the buyer earned nothing."""
    expected = sum(max(1, round(1000 * float(str(job["cpu_seconds"])))) for job in done.values())
    coins = market.coins()
    problems = []
    if round(1000 * coins.get(VOLUNTEER, 0.0)) != expected:
        problems.append(
            f"account {VOLUNTEER} holds {coins.get(VOLUNTEER, 0.0):.3f} coins, "
            f"not the {expected / 1000:.3f} its accepted results earned"
        )
    if coins.get(BUYER, 0.0) != 0:
        problems.append(f"the buyer's account {BUYER} was credited {coins[BUYER]:.3f} coins")
    return problems


def seller_problems(events: Sequence[Event], cpus: int, order: SellOrder) -> list[str]:
    """One seller per vCPU for `order`, each at the order's nice level."""
    started = [e for e in events if e.event == "seller-started"]
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


def console_problems(events: Sequence[Event], *, market_reachable: bool = True) -> list[str]:
    """What the guest itself reported as wrong: failed self-test, errors (but the market
    out of reach while the guest had no address yet, or at all where the test runs no
    market), failed jobs."""
    problems = []
    network_up = False
    for e in events:
        network_up = network_up or e.event == "network"
        if e.event == "seccomp" and e.fields.get("status") != "verified":
            problems.append(f"the seccomp self-test failed: {e.fields.get('reason', '?')}")
        elif (
            e.event == "error"
            and e.fields.get("what") in MARKET_ABSENT
            and not (network_up and market_reachable)
        ):
            continue  # a seller that starts before DHCP is done retries once it is
        elif e.event == "error":
            problems.append(
                f"the guest reported an error: {e.fields.get('what')}: {e.fields.get('detail', '')}"
            )
        elif e.event == "job-finished" and e.fields.get("status") != "ok":
            problems.append(f"job {e.fields.get('job')} finished {e.fields.get('status')}")
    orders = [e for e in events if e.event == "orders"]
    if not orders or orders[0].fields.get("source") != "medium":
        problems.append("the guest did not take its orders from the CPUSHARE medium")
    return problems


def crash_problems(guest: Guest) -> list[str]:
    """A Python traceback on the console: something in the live system crashed. The
    problem names the exception (the traceback's first unindented line)."""
    texts = [line.text for line in guest.lines]
    for i, text in enumerate(texts):
        if text.startswith("Traceback (most recent call last)"):
            last = next((t for t in texts[i + 1 :] if t and not t.startswith(" ")), "?")
            return [f"the guest printed a Python traceback ending in: {last}"]
    return []


def run_market_smoke(
    cfg: GuestConfig,
    log_path: Path,
    workdir: Path,
    *,
    jobs: int = 6,
    timeout: float = 300.0,
    power_off_timeout: float = 30.0,
    while_up: Callable[[Guest], list[str]] | None = None,
) -> MarketSmokeResult:
    """The whole run: market, order, medium, jobs, then boot `cfg` (its own disks
    stay attached beside the medium) until every job is accepted; then the checks.
    `while_up` looks into the guest before it is powered off and returns problems."""
    result = MarketSmokeResult(jobs=jobs)
    inputs = job_inputs(jobs)
    program = build_fsdither(workdir)
    with ThrowawayMarket(workdir / "market") as market:
        market.start()
        medium = make_medium({f"{VOLUNTEER}.cpu": market.order_file()}, workdir / "medium.img")
        by_job = dict(zip(market.submit(program, inputs), inputs, strict=True))
        guest_cfg = replace(
            cfg, sticks=(medium, *cfg.sticks), forwards=(*cfg.forwards, market.forward)
        )
        with Guest(guest_cfg, log_path) as guest:
            watch = ConsoleWatch(guest)
            done = wait_for_results(watch, market, list(by_job), timeout)
            result.events = watch.events
            _measure(result, watch, done)
            result.problems += result_problems(market, by_job, done)
            result.problems += coin_problems(market, done)
            result.coins = market.coins().get(VOLUNTEER, 0.0)
            result.problems += seller_problems(watch.events, cfg.cpus, market.order)
            result.problems += console_problems(watch.events)
            result.problems += crash_problems(guest)
            if not guest.running:
                result.problems.append(f"QEMU exited early: {guest.stderr or 'no message'}")
            elif while_up is not None:
                result.problems += while_up(guest)
            power_off(guest, result, power_off_timeout)
    if result.problems:
        result.problems.append(f"console log: {log_path}")
    return result


def _measure(
    result: MarketSmokeResult, watch: ConsoleWatch, done: Mapping[int, Mapping[str, object]]
) -> None:
    """Guest uptime at the first and last accepted result, and jobs per minute from the
    first lease to the last accepted result."""
    result.accepted = len(done)
    finished = sorted(float(str(job["finished"])) for job in done.values())
    if not finished:
        return
    result.first_result_uptime = watch.uptime_at(finished[0])
    result.last_result_uptime = watch.uptime_at(finished[-1])
    leased = watch.find("job-leased")
    if leased:
        span = finished[-1] - watch.wall_of(leased[0])
        result.jobs_per_minute = 60 * len(finished) / span if span > 0 else None


def run_order_smoke(
    cfg: GuestConfig,
    order_file: Path,
    log_path: Path,
    workdir: Path,
    *,
    timeout: float = 120.0,
    power_off_timeout: float = 30.0,
) -> MarketSmokeResult:
    """Boot with a CPUSHARE medium carrying `order_file` until one seller per vCPU has
    started. The order's market need not be reachable: sellers wait for it."""
    result = MarketSmokeResult()
    medium = make_medium({order_file.name: order_file.read_bytes()}, workdir / "medium.img")
    with Guest(replace(cfg, sticks=(medium, *cfg.sticks)), log_path) as guest:
        watch = ConsoleWatch(guest)
        deadline = time.monotonic() + timeout * timeout_factor()
        while len(watch.find("seller-started")) < cfg.cpus and not _refused(watch.events):
            left = deadline - time.monotonic()
            if left <= 0 or not guest.running:
                result.problems.append(
                    f"{cfg.cpus} seller(s) did not start within {timeout:.0f} s"
                    if guest.running
                    else f"QEMU exited early: {guest.stderr or 'no message'}"
                )
                break
            watch.pump(min(left, 1.0) / timeout_factor())
        result.events = watch.events
        result.problems += console_problems(watch.events, market_reachable=False)
        result.problems += crash_problems(guest)
        power_off(guest, result, power_off_timeout)
    if result.problems:
        result.problems.append(f"console log: {log_path}")
    return result


def _refused(events: Sequence[Event]) -> bool:
    """The guest said it sells nothing: strict seccomp failed, or no order was valid."""
    return any(
        (e.event == "error" and e.fields.get("what") == "sellers")
        or (e.event == "orders" and e.fields.get("count") == "0")
        for e in events
    )


MILESTONES = ("init", "secureboot", "network", "seccomp", "orders", "seller-started", "error")


def format_report(result: MarketSmokeResult, echo: Callable[[str], None]) -> None:
    """The milestones with guest uptime and host wall time, the first lease and result,
    then the figures."""
    echo(f"{'milestone':<15} {'uptime':>8} {'wall':>8}  details")
    shown = [e for e in result.events if e.event in MILESTONES]
    for name in ("job-leased", "job-finished"):
        shown += [e for e in result.events if e.event == name][:1]
    for e in sorted(shown, key=lambda e: e.host_seconds):
        details = " ".join(f"{k}={v}" for k, v in e.fields.items() if k not in ("event", "uptime"))
        up = f"{e.uptime:7.2f}s" if e.uptime is not None else "       -"
        echo(f"{e.event:<15} {up:>8} {e.host_seconds:7.2f}s  {details}")
    for label, uptime in (
        ("first result", result.first_result_uptime),
        ("last result", result.last_result_uptime),
    ):
        if uptime is not None:
            echo(f"{label:<15} {uptime:7.2f}s {'':>8}  accepted by the market")
    if result.jobs:
        rate = f"{result.jobs_per_minute:.1f}" if result.jobs_per_minute else "-"
        echo(
            f"jobs: {result.accepted}/{result.jobs} accepted; {rate} jobs per minute; "
            f"{result.coins:.3f} coins credited to {VOLUNTEER}"
        )
    echo(
        f"power off: {'clean' if result.powered_off else 'FAILED'} "
        f"after {result.wall_seconds:.1f} s"
    )


def smoke_with_orders(
    cfg: GuestConfig,
    log_path: Path,
    *,
    order_file: Path | None,
    market: bool,
    jobs: int,
    timeout: float,
) -> MarketSmokeResult:
    """`livecd smoke --order FILE` or `--market`, in a scratch directory."""
    if order_file is not None and market:
        raise UserError("give --order or --market, not both: --market issues its own order")
    with tempfile.TemporaryDirectory(prefix="livecd-e2e-") as tmp:
        if order_file is not None:
            check_order_file(order_file)
            return run_order_smoke(cfg, order_file, log_path, Path(tmp), timeout=timeout)
        return run_market_smoke(cfg, log_path, Path(tmp), jobs=jobs, timeout=timeout)


def result_json(result: MarketSmokeResult) -> dict[str, object]:
    return {
        "ok": result.ok,
        "problems": result.problems,
        "jobs": result.jobs,
        "accepted": result.accepted,
        "first_result_uptime": result.first_result_uptime,
        "last_result_uptime": result.last_result_uptime,
        "jobs_per_minute": result.jobs_per_minute,
        "coins": result.coins,
        "wall_seconds": result.wall_seconds,
        "powered_off": result.powered_off,
        "milestones": [
            {"event": e.event, "fields": dict(e.fields), "wall": e.host_seconds}
            for e in result.events
        ],
    }
