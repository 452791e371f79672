"""The fleet on the host: real forked sellers, a real market on loopback, the real jail."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from polling import until
from seller_processes import StartSeller, outlivers, running, statuses_when

from cpushare.console import events_in
from cpushare.order import SellOrder
from cpushare.seller.host import SEATS_PER_SELLER
from cpushare.seller.plan import make_seats
from cpushare.seller.status import read_status, read_statuses
from livecd.market_process import MarketProcess, free_port
from livecd.orders import write_order
from livecd.sdk.dither import dither, sample_image
from market import admin
from market.buyer import BuyerClient

GiB = 1 << 30


class FleetProcess:
    """`python3 -m cpushare.seller.fleet` with short waits, its console in a file."""

    def __init__(self, workdir: Path, cmdline: str) -> None:
        self.run = workdir / "run"
        self.console = workdir / "fleet.console"
        (workdir / "cmdline").write_text(cmdline + "\n")
        argv = [sys.executable, "-m", "cpushare.seller.fleet", str(self.run)]
        argv += ["--orders", str(workdir / "orders"), "--cmdline", str(workdir / "cmdline")]
        argv += ["--wait", "1", "--request-timeout", "2", "--backoff-max", "0.4"]
        argv += ["--hang-grace", "1"]
        with open(self.console, "wb") as out:
            self.process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)

    def events(self, name: str, **fields: str) -> list[dict[str, str]]:
        return events_in(self.console.read_text(), name, **fields)

    def wait_for(
        self, name: str, count: int = 1, timeout: float = 60, **fields: str
    ) -> list[dict[str, str]]:
        return until(
            lambda: found if len(found := self.events(name, **fields)) >= count else None,
            f"{count} x {name}",
            timeout,
            0.05,
            self.console.read_text,
        )


@pytest.fixture
def orders(tmp_path: Path, market: MarketProcess) -> Path:
    (tmp_path / "orders").mkdir()
    market.account("volunteer")
    market.order("volunteer", tmp_path / "orders" / "volunteer.cpu")
    return tmp_path / "orders"


@pytest.fixture
def start_fleet(tmp_path: Path) -> Iterator[Callable[[str], FleetProcess]]:
    """Starts a fleet in the test's folder with a kernel command line; the fleets started
    are stopped at the end of the test as the live CD stops them (SIGTERM, then SIGKILL),
    and none may leave a seller behind."""
    started: list[FleetProcess] = []

    def start(cmdline: str) -> FleetProcess:
        started.append(FleetProcess(tmp_path, cmdline))
        return started[-1]

    yield start
    for fleet in started:
        if fleet.process.poll() is None:
            fleet.process.terminate()
            try:
                fleet.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                fleet.process.kill()
                fleet.process.wait()
    left = [pid for fleet in started for pid in outlivers(str(fleet.run))]
    assert not left, f"sellers outlived their fleet: {left}"


def _nice(pid: int, tid: str) -> int:
    return int(Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"


def test_a_seller_per_seat_at_the_options_nice_level_sells_and_a_killed_one_comes_back(
    orders: Path,
    market: MarketProcess,
    buyer: BuyerClient,
    fsdither: bytes,
    start_fleet: Callable[[str], FleetProcess],
) -> None:
    fleet = start_fleet("quiet cpushare.sellers=2 cpushare.nice=7")
    started = fleet.wait_for("seller-started", 2)
    assert fleet.events("seccomp", status="verified")
    assert fleet.events("orders", source="directory", count="1")
    memory = fleet.events("memory")[0]
    assert (memory["sellers"], memory["wanted"]) == ("2", "2")
    assert int(memory["job_memory_mb"]) > 16
    assert {e["nice"] for e in started} == {"7"}
    assert len({e["pid"] for e in started}) == 2
    for event in started:
        assert os.getpriority(os.PRIO_PROCESS, int(event["pid"])) == 7
    # The fleet enrolled the machine once: one host, SEATS_PER_SELLER seats per seller.
    (enrolled,) = fleet.events("enrolled")
    assert enrolled["seats"] == str(2 * SEATS_PER_SELLER)
    images = [sample_image(30 + i, 20 + i, seed=i) for i in range(4)]
    # replicas=1: this is about the fleet, not about agreement (one machine here).
    jobs = buyer.submit(buyer.upload_program(fsdither), images, replicas=1)
    until(
        lambda: buyer.status()["jobs"]["done"] >= len(jobs),
        "the jobs to be done",
        told=fleet.console.read_text,
    )
    assert [buyer.output(job) for job in jobs] == [dither(image) for image in images]
    statuses = statuses_when(
        fleet.run / "status", lambda found: sum(s.jobs_done for s in found.values()) == len(jobs)
    )
    assert sorted(statuses) == ["volunteer-cpu0", "volunteer-cpu1"]
    with sqlite3.connect(market.db) as db:
        seats = db.execute("SELECT DISTINCT host_id, seat FROM leases").fetchall()
    assert {host for host, _ in seats} == {enrolled["host"]}
    assert {s for _, s in seats} <= set(range(2 * SEATS_PER_SELLER))
    assert all(s.market_seen is not None and s.account == "volunteer" for s in statuses.values())

    os.kill(int(started[0]["pid"]), signal.SIGKILL)
    died = fleet.wait_for("error", what="seller")[0]
    assert "killed by SIGKILL" in died["detail"] and "restarting" in died["detail"]
    again = fleet.wait_for("seller-started", 3)[2]
    assert again["pid"] not in {e["pid"] for e in started}
    assert again["cpu"] == started[0]["cpu"]


def test_a_lone_seller_enrolls_the_machine_itself_and_its_successor_keeps_the_host(
    orders: Path,
    market: MarketProcess,
    buyer: BuyerClient,
    fsdither: bytes,
    start_fleet: Callable[[str], FleetProcess],
) -> None:
    fleet = start_fleet("cpushare.sellers=1")
    first = fleet.wait_for("seller-started")[0]
    (enrolled,) = fleet.wait_for("enrolled")
    assert enrolled["seats"] == str(SEATS_PER_SELLER)
    program = buyer.upload_program(fsdither)

    def sells(seed: int) -> None:
        image = sample_image(12, 10, seed=seed)
        (job,) = buyer.submit(program, [image], replicas=1)
        until(
            lambda: buyer.job(job)["state"] == "done",
            "the job to be done",
            told=fleet.console.read_text,
        )
        assert buyer.output(job) == dither(image)

    sells(1)
    os.kill(int(first["pid"]), signal.SIGKILL)
    second = fleet.wait_for("seller-started", 2)[1]
    sells(2)
    # The successor got the identity the first seller enrolled: no second host.
    assert len(fleet.events("enrolled")) == 1
    # The successor's own count: one job, the first seller's not carried over.
    statuses_when(
        fleet.run / "status",
        lambda found: [(s.pid, s.jobs_done) for s in found.values()] == [(int(second["pid"]), 1)],
    )
    with sqlite3.connect(market.db) as db:
        hosts = db.execute("SELECT DISTINCT host_id FROM leases").fetchall()
    assert hosts == [(enrolled["host"],)]


def test_a_lone_seller_waiting_for_the_market_is_the_fleets_one_child(
    tmp_path: Path, start_fleet: Callable[[str], FleetProcess]
) -> None:
    (tmp_path / "orders").mkdir()
    order = SellOrder(f"http://127.0.0.1:{free_port()}", "o-nowhere", "s" * 24, "volunteer")
    write_order(order, tmp_path / "orders" / "nowhere.cpu")
    fleet = start_fleet("cpushare.sellers=1")
    first = int(fleet.wait_for("seller-started")[0]["pid"])
    fleet.wait_for("error", 2, what="market-unreachable")
    # The seller enrolls the machine itself: no child only for that.
    assert set(running(str(fleet.run))) == {fleet.process.pid, first}
    # Its main thread at the order's nice level; the enrollment's threads (and the
    # lifeline's) at the fleet's, as the enrolling child was.
    nice = {tid: _nice(first, tid) for tid in os.listdir(f"/proc/{first}/task")}
    assert nice.pop(str(first)) == 19
    assert len(nice) >= 2 and set(nice.values()) == {0}
    statuses = read_statuses(fleet.run / "status")
    assert {s.state for s in statuses.values()} == {"enrolling"}
    # Dead before it enrolled: the fleet enrolls in a child of its own from then on, and
    # the next seller waits for it.
    os.kill(first, signal.SIGKILL)
    assert "enrolling again" in fleet.wait_for("error", what="enroll")[0]["detail"]
    second = int(fleet.wait_for("seller-started", 2)[1]["pid"])
    children = set(running(str(fleet.run))) - {fleet.process.pid, second}
    assert len(children) == 1 and first not in children
    fleet.process.send_signal(signal.SIGTERM)
    fleet.process.wait(timeout=15)
    assert outlivers(str(fleet.run)) == []


def test_a_lone_seller_that_enrolled_sells_without_waiting_for_the_fleet(
    tmp_path: Path, fsdither: bytes, start_fleet: Callable[[str], FleetProcess]
) -> None:
    market = MarketProcess(tmp_path, port=free_port()).start()
    try:
        (tmp_path / "orders").mkdir()
        market.account("volunteer")
        market.order("volunteer", tmp_path / "orders" / "volunteer.cpu")
        buyer = BuyerClient(market.url, market.account("lab", coins=1_000_000).api_key)
        market.stop()
        fleet = start_fleet("cpushare.sellers=1")
        fleet.wait_for("error", what="market-unreachable")
        # The fleet stopped, the market back: the seller hands itself its identity.
        fleet.process.send_signal(signal.SIGSTOP)
        try:
            market.start()
            image = sample_image(12, 10)
            (job,) = buyer.submit(buyer.upload_program(fsdither), [image], replicas=1)
            until(
                lambda: buyer.job(job)["state"] == "done",
                "the job to be done",
                told=fleet.console.read_text,
            )
            assert buyer.output(job) == dither(image)
        finally:
            fleet.process.send_signal(signal.SIGCONT)
    finally:
        market.stop(kill=True)


def test_a_hung_seller_is_replaced(
    orders: Path, start_fleet: Callable[[str], FleetProcess]
) -> None:
    fleet = start_fleet("cpushare.sellers=1")
    first = fleet.wait_for("seller-started")[0]
    pid = int(first["pid"])
    # A seller waiting for the machine's enrollment promises nothing; one that leases does.
    status = fleet.run / "status" / "volunteer-cpu0.json"
    until(
        lambda: (s := read_status(status)) is not None and s.state not in ("starting", "enrolling"),
        "the seller to lease",
        30,
        0.05,
        lambda: read_status(status),
    )
    os.kill(pid, signal.SIGSTOP)
    replaced = fleet.wait_for("error", what="seller", timeout=30)[0]
    assert "hung and was replaced" in replaced["detail"]
    second = fleet.wait_for("seller-started", 2)[1]
    assert second["pid"] != first["pid"]
    assert _gone(pid)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_stopped_or_killed_fleet_leaves_no_seller_and_its_lease_goes_back(
    tmp_path: Path, spin: bytes, start_fleet: Callable[[str], FleetProcess], signum: signal.Signals
) -> None:
    market = MarketProcess(tmp_path, lease_seconds=600).start()
    try:
        (tmp_path / "orders").mkdir()
        market.account("volunteer")
        market.order("volunteer", tmp_path / "orders" / "volunteer.cpu")
        buyer = BuyerClient(market.url, market.account("lab", coins=1_000_000).api_key)
        # Far longer than the test: only a release puts a job back in the queue. Two jobs
        # per seller (the running one and the next): none is left polling for a job
        # released on the way out. replicas=1: this is about stopping, not agreement.
        jobs = buyer.submit(buyer.upload_program(spin), [b"100000"] * 4, replicas=1)
        fleet = start_fleet("cpushare.sellers=2 cpushare.nice=high")
        assert "cpushare.nice=high" in fleet.wait_for("error", what="option")[0]["detail"]
        sellers = {int(e["pid"]) for e in fleet.wait_for("seller-started", 2)}
        leased = {e["job"]: e["order"] for e in fleet.wait_for("job-leased", 2)}
        assert len(leased) == 2  # each seller runs one, its spare waits
        assert sellers | {fleet.process.pid} == set(running(str(fleet.run)))
        time.sleep(0.5)
        stopped_at = time.monotonic()
        fleet.process.send_signal(signum)
        # A stopped fleet stops its sellers; a killed one's sellers stop by themselves.
        assert fleet.process.wait(timeout=15) == (0 if signum == signal.SIGTERM else -signum)
        assert outlivers(str(fleet.run)) == []
        assert time.monotonic() - stopped_at < 6
        released = {e["job"]: e["order"] for e in fleet.events("lease-released")}
        assert sorted(map(int, released)) == jobs and leased.items() <= released.items()
        with sqlite3.connect(market.db) as db:
            rows = db.execute("SELECT job_id, state, released IS NOT NULL FROM leases")
            assert sorted(rows) == [(job, "expired", 1) for job in jobs]
        statuses = read_statuses(fleet.run / "status")
        assert {s.state for s in statuses.values()} == {"stopped"}
        assert {s.pid for s in statuses.values()} == sellers
    finally:
        market.stop(kill=True)


def test_seats_share_the_orders_in_turn_with_numbered_copies(tmp_path: Path) -> None:
    a, b = tmp_path / "lab.cpu", tmp_path / "libcaca-cpu0.cpu"
    a.write_text("a")
    b.write_text("b")
    seats = make_seats([(a, 19), (b, 10)], 3, tmp_path / "copies", None)
    assert [s.name for s in seats] == ["lab-cpu0", "libcaca-cpu1", "lab-cpu2"]
    assert [s.nice for s in seats] == [19, 10, 19]
    assert [s.order_file.read_text() for s in seats] == ["a", "b", "a"]
    assert {s.nice for s in make_seats([(a, 19)], 2, tmp_path / "c2", 5)} == {5}


def test_a_seller_takes_no_job_above_its_memory_cap(
    tmp_path: Path, market: MarketProcess, buyer: BuyerClient, fsdither: bytes,
    start_seller: StartSeller,
) -> None:  # fmt: skip
    market.order("lab", tmp_path / "lab.cpu")
    program = buyer.upload_program(fsdither)
    big = buyer.submit(program, [sample_image(8, 8)], limits={"memory_bytes": 64 << 20})[0]
    small = buyer.submit(program, [sample_image(8, 8)], limits={"memory_bytes": 16 << 20})[0]
    seller = start_seller(tmp_path / "lab.cpu", "--memory-cap", str(32 << 20))
    seller.wait_for("job-finished")
    time.sleep(2)  # two more lease rounds: the big job stays queued
    assert [e["job"] for e in seller.events("job-leased")] == [str(small)]
    assert buyer.job(big)["state"] == "open"


def test_a_revoked_host_stops_every_seller_of_the_fleet_for_good(
    orders: Path, market: MarketProcess, start_fleet: Callable[[str], FleetProcess]
) -> None:
    fleet = start_fleet("cpushare.sellers=2")
    fleet.wait_for("seller-started", 2)
    # The sellers start while the machine enrolls: under load the enrollment comes after.
    (enrolled,) = fleet.wait_for("enrolled")
    admin.revoke_host(market.db, enrolled["host"])  # as `livecd market host revoke` does
    assert fleet.process.wait(timeout=30) == 3
    # One line per seller, and no restart: the fleet stops once every seat is revoked.
    assert len(fleet.events("error", what="revoked")) == 2
    assert not fleet.events("error", what="seller")
    assert len(fleet.events("seller-started")) == 2
    assert (fleet.run / "state").read_text().startswith("not selling: the market revoked")
    statuses = read_statuses(fleet.run / "status")
    assert {s.state for s in statuses.values()} == {"revoked"}
    assert "Traceback" not in fleet.console.read_text()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_fleet_stopped_while_it_waits_to_enroll_leaves_nothing_behind(
    tmp_path: Path, start_fleet: Callable[[str], FleetProcess], signum: signal.Signals
) -> None:
    (tmp_path / "orders").mkdir()
    order = SellOrder(f"http://127.0.0.1:{free_port()}", "o-nowhere", "s" * 24, "volunteer")
    write_order(order, tmp_path / "orders" / "nowhere.cpu")
    fleet = start_fleet("cpushare.sellers=2")
    fleet.wait_for("seller-started", 2)
    fleet.wait_for("error", 2, what="market-unreachable")
    assert not fleet.events("enrolled")
    statuses = read_statuses(fleet.run / "status")
    assert {s.state for s in statuses.values()} == {"enrolling"}
    fleet.process.send_signal(signum)
    fleet.process.wait(timeout=15)
    # The sellers and the child enrolling the machine end with it.
    assert outlivers(str(fleet.run)) == []


def test_the_fleet_checks_the_jail_once_and_its_sellers_not_again(
    tmp_path: Path, start_fleet: Callable[[str], FleetProcess], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The self-test runs the loader twice (a forbidden call, a benign job): the fleet's
    check, before it forks; a seller it forks starts without running it again."""
    real = os.environ["CPUSHARE_LOADER"]
    runs = tmp_path / "loader-runs"
    wrapper = tmp_path / "loader"
    wrapper.write_text(f'#!/bin/sh\necho run >> "{runs}"\nexec "{real}" "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("CPUSHARE_LOADER", str(wrapper))
    (tmp_path / "orders").mkdir()
    order = SellOrder(f"http://127.0.0.1:{free_port()}", "o-nowhere", "s" * 24, "volunteer")
    write_order(order, tmp_path / "orders" / "nowhere.cpu")
    fleet = start_fleet("cpushare.sellers=2")
    assert fleet.wait_for("seccomp", status="verified")
    fleet.wait_for("seller-started", 2)
    assert runs.read_text().split() == ["run", "run"]
