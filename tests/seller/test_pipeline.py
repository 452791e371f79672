"""Less protocol per job, with a real market and real seller processes: the next job is
leased while one runs, every request of a seller goes over one kept-alive connection, and
a result is kept until the market acknowledged it (or its loss said, on the way out)."""

from __future__ import annotations

import itertools
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from polling import until
from relay import Relay
from seller_processes import SellerProcess, StartSeller

from cpushare.jail import JobResult, Outcome
from cpushare.protocol import BLOBS, LeaseOffer, Recorded
from cpushare.seller.agent import Seller
from cpushare.seller.client import MarketClient
from cpushare.seller.courier import Courier, queue_target
from cpushare.seller.host import Identity
from cpushare.seller.options import SellerOptions
from cpushare.seller.plan import QUEUE_INPUT_BYTES
from cpushare.seller.status import read_status
from livecd.market_process import MarketProcess
from market.buyer import BuyerClient


@pytest.fixture
def relay(market: MarketProcess) -> Iterator[Relay]:
    relay = Relay(("127.0.0.1", market.port))
    yield relay
    relay.close()


def _order(market: MarketProcess, relay: Relay, tmp_path: Path) -> Path:
    path = tmp_path / "volunteer.cpu"
    market.account("volunteer")
    market.order("volunteer", path, public_url=relay.url)
    return path


def _sell(
    market: MarketProcess,
    relay: Relay,
    tmp_path: Path,
    start_seller: StartSeller,
    buyer: BuyerClient,
    jobs: list[int],
) -> None:
    """One seller, reaching the market through the relay, sells until `jobs` are done."""
    start_seller(_order(market, relay, tmp_path))
    until(lambda: buyer.status()["jobs"]["done"] == len(jobs), "the jobs to be done", 90)


@pytest.fixture
def sell_spins(
    market: MarketProcess,
    tmp_path: Path,
    buyer: BuyerClient,
    spin: bytes,
    start_seller: StartSeller,
) -> Callable[[int, Relay], list[int]]:
    """Sells `count` spin jobs of no time with one seller reaching the market through
    `relay`, and checks each one's output."""

    def sell(count: int, relay: Relay) -> list[int]:
        jobs = buyer.submit(buyer.upload_program(spin), [b"0"] * count, replicas=1)
        _sell(market, relay, tmp_path, start_seller, buyer, jobs)
        assert all(buyer.output(job) == b"spun\n" for job in jobs)
        return jobs

    return sell


@pytest.fixture
def market(tmp_path: Path) -> Iterator[MarketProcess]:
    # Short leases: every job of about 1.6 s is extended at least once.
    with MarketProcess(tmp_path / "market", lease_seconds=3).start() as process:
        yield process


def test_the_next_job_is_leased_while_one_runs_over_one_connection(
    market: MarketProcess,
    relay: Relay,
    tmp_path: Path,
    buyer: BuyerClient,
    spin: bytes,
    start_seller: StartSeller,
) -> None:
    jobs = buyer.submit(buyer.upload_program(spin), [b"2500"] * 6, replicas=1)
    _sell(market, relay, tmp_path, start_seller, buyer, jobs)
    with sqlite3.connect(market.db) as db:
        leases = db.execute(
            "SELECT l.created, r.created FROM leases l JOIN results r ON r.lease_id = l.id "
            "ORDER BY l.created"
        ).fetchall()
    assert len(leases) == len(jobs)
    # Each next job was leased before the one before it had its result.
    ahead = [later[0] < earlier[1] for earlier, later in itertools.pairwise(leases)]
    assert all(ahead), leases
    # One connection for all: the enrollment, then as the host it enrolled (the client
    # that enrolled hands its connection over) leases, programs, extensions (some 10 in
    # all here) and results.
    assert relay.requests(b"POST /v1/leases/") >= 4  # extensions
    assert relay.connections == 1


AwayRun = Callable[[bytes], tuple[BuyerClient, SellerProcess, int]]


@pytest.fixture
def finished_while_away(
    market: MarketProcess,
    relay: Relay,
    tmp_path: Path,
    spin: bytes,
    start_seller: StartSeller,
) -> AwayRun:
    """A seller that ran one spin job (it holds the program, so a job of it leased next
    needs the market no more until its result), then a second job (`spins`) that it
    finished while the market was cut off; the relay stays cut."""

    def run(spins: bytes) -> tuple[BuyerClient, SellerProcess, int]:
        buyer = BuyerClient(market.url, market.account("lab", coins=100_000).api_key)
        program = buyer.upload_program(spin)
        (first,) = buyer.submit(program, [b"1"], replicas=1)
        seller = start_seller(_order(market, relay, tmp_path))
        until(lambda: buyer.job(first)["state"] == "done", "the first job to be done", 90)
        (job,) = buyer.submit(program, [spins], replicas=1)
        seller.wait_for("job-leased", 2)
        relay.cut(True)  # the market is away when the job ends (its lease outlasts this)
        seller.wait_for("job-finished", 2)
        return buyer, seller, job

    return run


def test_a_result_is_kept_until_the_market_has_it(
    relay: Relay, finished_while_away: AwayRun
) -> None:
    buyer, seller, job = finished_while_away(b"3000")
    until(
        lambda: any(e["what"] == "post-result" for e in seller.events("error")),
        "a failed post",
        90,
    )
    assert buyer.job(job)["state"] == "open"
    relay.cut(False)
    until(lambda: buyer.job(job)["state"] == "done", "the result to arrive", 90)
    assert buyer.output(job) == b"spun\n"


def test_a_stopped_seller_says_which_result_it_could_not_post(
    finished_while_away: AwayRun,
) -> None:
    _, seller, job = finished_while_away(b"1500")
    seller.stop()
    assert seller.process.returncode == 143
    (lost,) = [e for e in seller.events("error") if e["what"] == "result-lost"]
    assert lost["job"] == str(job) and "runs again elsewhere" in lost["detail"]
    assert "Traceback" not in seller.console.read_text()


def test_tiny_jobs_are_leased_and_posted_together_in_batches_on_a_queue_of_seats(
    market: MarketProcess, relay: Relay, sell_spins: Callable[[int, Relay], list[int]]
) -> None:
    jobs = sell_spins(60, relay)
    with sqlite3.connect(market.db) as db:
        leases = db.execute("SELECT created, seat FROM leases").fetchall()
        batches = db.execute(
            "SELECT COUNT(*) FROM leases GROUP BY created ORDER BY COUNT(*) DESC"
        ).fetchall()
    assert len(leases) == len(jobs)  # none handed back: each seat asked only when free
    # More than the old two seats, leased several in one request, their results posted
    # several in one request, all over one connection.
    assert len({seat for _, seat in leases}) > 2
    assert batches[0][0] >= 3, batches
    assert relay.requests(b"POST /v1/leases ") < len(jobs) / 2
    assert relay.requests(b"POST /v1/results ") < len(jobs) / 2
    assert relay.connections <= 2
    # Fewer requests per job: the next leases ride on the results' posts (POST
    # /v1/results with `next`), a lease request of its own only when the queue runs low
    # (the first job, the last ones). Leasing apart took 9 to 11 requests here.
    posts = relay.requests(b"POST /v1/results ")
    apart = relay.requests(b"POST /v1/leases ")
    assert relay.sent.count(b'"next": ') >= posts / 2, (posts, apart)
    assert apart < len(jobs) / 10, (posts, apart)


def test_the_first_results_post_leases_a_full_queue_of_tiny_jobs(
    relay: Relay, sell_spins: Callable[[int, Relay], list[int]]
) -> None:
    sell_spins(40, relay)
    # The first lease came back at once: it stands for a round trip, so once the first
    # job ended (its time known) the first post asks for the queue's worth of seats,
    # not for one more spare (the queue then grew a round trip at a time, running dry).
    sent = bytes(relay.sent)
    start = sent.index(b"POST /v1/results ")
    end = sent.find(b"POST /v1/", start + 1)
    first_post = sent[start : end if end > 0 else len(sent)]
    asked = re.search(rb'"next": \{[^}]*"seats": \[([0-9, ]*)\]', first_post)
    assert asked is not None, first_post[:2000]
    assert len(asked.group(1).split(b",")) >= 4, asked.group(0)


BLOBS_POST = b"Content-Type: " + BLOBS.encode()


def test_results_go_raw_after_their_document_to_a_market_that_leases_so(
    relay: Relay, sell_spins: Callable[[int, Relay], list[int]]
) -> None:
    sell_spins(30, relay)
    # Every post follows a lease reply, which came as BLOBS: every post goes so.
    posts = relay.requests(b"POST /v1/results ")
    assert posts and relay.sent.count(BLOBS_POST) == posts
    assert b'"output"' not in relay.sent and b'"output_size": 5' in relay.sent


def test_a_market_that_answers_json_alone_is_posted_json(
    market: MarketProcess, sell_spins: Callable[[int, Relay], list[int]]
) -> None:
    accept = f"Accept: {BLOBS}, application/json\r\n".encode()
    old = Relay(("127.0.0.1", market.port), strip=accept)
    try:
        sell_spins(20, old)
        assert BLOBS.encode() not in old.sent and b'"output": "c3B1bgo="' in old.sent
    finally:
        old.close()


def _tiny_result() -> JobResult:
    return JobResult(Outcome.OK, 0, b"spun\n", 0.001, 0.001, "")


def test_the_queue_keeps_its_inputs_within_the_memory_plan(
    market: MarketProcess, tmp_path: Path, spin: bytes
) -> None:
    """The courier asks for no more seats than the queued inputs' budget leaves room for,
    however short the jobs are (which makes the queue want every seat)."""
    buyer = BuyerClient(market.url, market.account("lab", coins=100_000).api_key)
    buyer.submit(buyer.upload_program(spin), [b"0" * 1000] * 20, replicas=1)
    market.account("volunteer")
    order = market.order("volunteer")
    host = market.enroll(order, seats=16)
    client = MarketClient(order, 30.0, host.auth)
    errors: list[tuple[str, object]] = []
    courier = Courier(
        client,
        list(range(16)),
        lambda o: o,
        lambda *_: None,
        lambda what, detail: errors.append((what, detail)),
        5.0,
        1.0,
        queue_bytes=2500,
    )
    body = {"seller": "test", "max_memory_bytes": 1 << 30, "max_cpu_seconds": 600}
    try:
        courier.lease(body, 0.0)  # the inputs' size unknown: the job to run and a spare
        assert courier.queued() == 2
        for _ in range(4):
            offer = courier.next_job(5.0)
            assert offer is not None
            courier.deliver(offer, _tiny_result())  # a job of no time: every seat wanted
            courier.lease_ahead(body)
            until(lambda: courier.unposted() == 0 and courier.queued() >= 2, "a refill", 30)
            # Two queued inputs of 1000 bytes fit in 2500, a third would not.
            assert courier.queued() == 2
            assert courier.target() == 15
        # Emptied (no more leased beside the results' posts), the queue is refilled with
        # the job to run now and two more.
        courier.lease_ahead(None)
        while (offer := courier.next_job(5.0)) is not None:
            courier.deliver(offer, _tiny_result())
            until(lambda: courier.unposted() == 0, "the results to be posted", 30)
        courier.lease(body, 0.0)
        assert courier.queued() == 3
        assert errors == []
    finally:
        for item in courier.close():
            if isinstance(item, LeaseOffer):
                courier.release(item)
        client.close()


def test_the_first_job_sizes_the_queue_from_its_run_and_the_first_lease(
    market: MarketProcess, tmp_path: Path, spin: bytes
) -> None:
    """The first lease, a long poll answered at once, stands for a round trip; the first
    job's time counts from its run (not from its program's fetch): once it ended, the
    queue is sized for tiny jobs (every seat but the running one's), not one spare."""
    buyer = BuyerClient(market.url, market.account("lab", coins=100_000).api_key)
    buyer.submit(buyer.upload_program(spin), [b"0"] * 4, replicas=1)
    market.account("volunteer")
    order = market.order("volunteer")
    host = market.enroll(order, seats=16)
    client = MarketClient(order, 30.0, host.auth)
    courier = Courier(client, list(range(16)), lambda o: o, lambda *_: None, print, 5.0, 1.0)
    body = {"seller": "test", "max_memory_bytes": 1 << 30, "max_cpu_seconds": 600}
    try:
        courier.lease(body, 5.0)  # may wait: jobs are there, so it does not
        offer = courier.next_job(5.0)
        assert offer is not None and courier.target() == 1  # the job's time unknown
        time.sleep(0.5)  # as if its program were fetched meanwhile
        courier.starts_now(offer)
        courier.deliver(offer, _tiny_result())
        assert courier.job_seconds is not None and courier.job_seconds < 0.5
        assert courier.target() == 15
    finally:
        for item in courier.close():
            if isinstance(item, LeaseOffer):
                courier.release(item)
        client.close()


def test_room_for_an_output_counts_the_results_still_unposted_alone(
    market: MarketProcess, relay: Relay, spin: bytes
) -> None:
    """The outputs awaiting their post are counted as they come and as the market
    acknowledges them: an acknowledged one no longer takes room from the next job's."""
    _, courier = _spin_courier(market, spin, 2, relay, seats=4, timeout=5.0)
    body = {"seller": "test", "max_memory_bytes": 1 << 30, "max_cpu_seconds": 600}
    output = JobResult(Outcome.OK, 0, b"x" * 1000, 0.001, 0.001, "")
    try:
        courier.lease(body, 0.0)  # the job to run now and a spare
        first, second = courier.next_job(5.0), courier.next_job(5.0)
        assert first is not None and second is not None
        courier.deliver(first, output)
        until(lambda: courier.unposted() == 0, "the first result to be acknowledged", 30)
        relay.cut(True)  # the second stays unposted
        courier.deliver(second, output)
        assert courier.unposted() == 1
        assert courier.make_room(1000, 2000, 0.0)
        assert not courier.make_room(1001, 2000, 0.0)
    finally:
        courier.close()
        courier.client.close()


def test_queue_target_runs_a_few_round_trips_of_jobs_ahead() -> None:
    assert queue_target(None, None, 16) == 1  # not measured yet: a spare
    assert queue_target(600.0, 0.1, 16) == 1  # long jobs: a spare is enough
    assert queue_target(0.015, 0.09, 16) == 15  # tiny ones: every other seat
    # Four round trips' worth, and the jobs that run while a batch of results gathers
    # (as many as end in 0.25 s, at most 8).
    assert queue_target(0.1, 0.1, 16) == 4 + 2
    assert queue_target(0.015, 0.09, 64) == 24 + 7
    assert queue_target(0.3, 0.1, 16) == 2  # a result of 0.3 s is posted alone
    assert queue_target(0.0, 0.1, 16) == 15
    assert queue_target(0.015, 0.09, 1) == 0  # one seat: nothing ahead


def test_a_seller_gives_its_courier_the_plans_queue_budget(
    market: MarketProcess, tmp_path: Path
) -> None:
    """The fleet's plan reaches the queue: `--queue-input` is the courier's budget (the
    fleet sets it per boot), and a seller outside any plan keeps the most."""
    market.account("volunteer")
    order_file = tmp_path / "volunteer.cpu"
    order = market.order("volunteer", order_file)
    host = market.enroll(order)
    identity = Identity(host.id, host.secret, 1, order.order_id)
    for given, budget in ((2500, 2500), (None, QUEUE_INPUT_BYTES)):
        seller = Seller(order, order_file, SellerOptions(queue_input=given))
        seller._use(identity)
        assert seller.courier is not None and seller.courier.queue_bytes == budget
        seller.client.close()


def _voluntary_switches(thread: threading.Thread) -> int:
    """How many times `thread` went to sleep (each wake-up of it ends in one)."""
    status = Path(f"/proc/self/task/{thread.native_id}/status").read_text()
    line = next(x for x in status.splitlines() if x.startswith("voluntary_ctxt_switches"))
    return int(line.split()[1])


def test_the_job_loop_wakes_the_courier_only_for_its_errands(
    market: MarketProcess, tmp_path: Path, spin: bytes
) -> None:
    """Tiny jobs back to back wake the courier for the posts of their results (several
    together) and the leases, not at every job's start and end: on a machine of one CPU
    each wake-up is a switch to the courier's thread and back, for nothing."""
    jobs, measured_from = 72, 24  # by then the jobs' time and the round trip are known
    # Round trips a few times a job, as under emulation: the queue holds several jobs.
    relay = Relay(("127.0.0.1", market.port), delay=0.02)
    buyer, courier = _spin_courier(market, spin, jobs, relay, seats=32, timeout=30.0)
    body = {"seller": "test", "max_memory_bytes": 1 << 30, "max_cpu_seconds": 600}
    done, before, requests = 0, 0, 0
    try:
        while done < jobs:
            offer = courier.next_job(5.0)
            if offer is None:
                courier.lease(body, 0.0)
                continue
            courier.lease_ahead(body)
            time.sleep(0.01)  # the job runs
            courier.deliver(offer, _tiny_result())
            done += 1
            if done == measured_from:
                before = _voluntary_switches(courier._thread)
                requests = relay.requests(b"POST /v1/")
        until(lambda: courier.unposted() == 0, "the results to be posted", 30)
        # Each request the courier made puts it to sleep at least once.
        woken = _voluntary_switches(courier._thread) - before
        idle = woken - (relay.requests(b"POST /v1/") - requests)
        # Three wake-ups a job before (a job taken, the queue asked for, a result).
        assert idle < (jobs - measured_from) / 2, (woken, idle)
        assert buyer.status()["jobs"]["done"] == jobs
    finally:
        courier.close()
        courier.client.close()
        relay.close()


def test_tiny_jobs_leave_their_counts_to_the_job_loops_next_status_write(
    market: MarketProcess, tmp_path: Path
) -> None:
    """A post's acknowledged results are written to the status file at once, unless tiny
    jobs run back to back: then the job loop's next write carries them (a write at every
    post cost the courier milliseconds under emulation), and its next state at the
    latest. Counted either way."""
    market.account("volunteer")
    order_file = tmp_path / "volunteer.cpu"
    order = market.order("volunteer", order_file)
    host = market.enroll(order, seats=32)
    seller = Seller(order, order_file, SellerOptions(status_dir=tmp_path / "status"))
    seller._use(Identity(host.id, host.secret, 32, order.order_id).for_seller(0))
    path = tmp_path / "status" / "volunteer.json"
    acknowledged = [(_tiny_result(), Recorded("accepted", 0.5))] * 2

    def written() -> tuple[int, float]:
        status = read_status(path)
        assert status is not None
        return status.jobs_done, status.coins

    try:
        assert seller.courier is not None
        seller._recorded(acknowledged)  # no job running: written at once
        assert written() == (2, 1.0)
        seller.running = LeaseOffer(7, 7, "0" * 64, 1, b"", 1, 1.0, 1 << 20, 100, 15.0, 0)
        seller.courier._job_seconds = 30.0  # long jobs: written at once
        seller._recorded(acknowledged)
        assert written() == (4, 2.0)
        seller.courier._job_seconds = 0.02  # tiny ones: noted, and counted on
        seller._recorded(acknowledged)
        seller._recorded(acknowledged)
        assert written() == (4, 2.0)
        assert seller.status.value("jobs_done") == 8 and seller.status.value("coins") == 4.0
        seller.running = None
        seller._state("leasing", 5.0, job=None)
        assert written() == (8, 4.0)
    finally:
        seller.courier.close()
        seller.client.close()


def _spin_courier(
    market: MarketProcess, spin: bytes, jobs: int, relay: Relay, seats: int, timeout: float
) -> tuple[BuyerClient, Courier]:
    """A buyer with `jobs` spin jobs of no length queued, and the courier of a host with
    `seats` seats enrolled through `relay` (close its client with it)."""
    buyer = BuyerClient(market.url, market.account("lab", coins=100_000).api_key)
    buyer.submit(buyer.upload_program(spin), [b"0"] * jobs, replicas=1)
    market.account("volunteer")
    order = market.order("volunteer", public_url=relay.url)
    host = market.enroll(order, seats=seats)
    client = MarketClient(order, timeout, host.auth)
    return buyer, Courier(client, list(range(seats)), lambda o: o, lambda *_: None, print, 5.0, 1.0)
