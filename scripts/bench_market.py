"""Market figures: lease + result round trips per second with many simulated sellers, with
validation on (two hosts per job until they earn trust, then adaptive) next to
`--replicas 1`; the long-poll wake-up latency from a submit to the lease it releases; and
the time of the coin ledger's check over 100,000 jobs.

Runs a real `livecd market serve` on loopback (SQLite, WAL, fsync per commit; or with
`--postgres URL` a fresh database on that PostgreSQL server for each run) and drives
it from one asyncio process with a minimal keep-alive HTTP/1.1 client, so that the client
costs as little CPU as possible. Simulated sellers are seats of hosts enrolled from distinct
loopback addresses (127.0.1.N), as distinct machines would be. Goals: >= 1000 round trips/s
with >= 200 sellers on two cores; validation once hosts are trusted costs <= 10% of the
accepted jobs per second; <= 50 ms median wake-up latency.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import psycopg

from cpushare.jail import JobResult, Outcome
from cpushare.limits import JobLimits
from cpushare.protocol import result_document
from livecd.market_process import MarketProcess
from livecd.toolchain import FSDITHER_SOURCE, build_job
from market import accounts, agreement, hosts, jobs, leasing, ledger, trust
from market.buyer import BuyerClient
from market.dialect import Connection as Database
from market.dialect import Location
from market.store import connect, open_database

JOB_SOURCE = FSDITHER_SOURCE
RESULT_BODY = json.dumps(
    result_document(JobResult(Outcome.OK, 0, b"P5\n1 1\n255\n\x00", 0.01, 0.01, ""))
).encode()


class Connection:
    """One keep-alive HTTP/1.1 connection: just enough protocol for this benchmark."""

    def __init__(self, port: int, authorization: str, source: str = "127.0.0.1") -> None:
        self.port = port
        self.authorization = authorization
        self.source = source
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(
                "127.0.0.1", self.port, local_addr=(self.source, 0)
            )
        assert self.reader is not None
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: {self.authorization}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        header = await self.reader.readuntil(b"\r\n\r\n")
        status = int(header[9:12])
        length = 0
        for line in header.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        return status, await self.reader.readexactly(length) if length else b""

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


@dataclass(frozen=True)
class Seat:
    """One simulated seller: a seat of a host, with the host's credentials and address."""

    authorization: str
    source: str
    seat: int


def basic(user: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()


async def seller_loop(conn: Connection, seat: int, stop: float, counts: list[int]) -> None:
    lease_body = json.dumps({"wait": 0, "seat": seat}).encode()
    while time.monotonic() < stop:
        status, body = await conn.request("POST", "/v1/lease", lease_body)
        if status != 200:
            continue
        lease = json.loads(body)["lease"]
        status, _ = await conn.request("POST", f"/v1/leases/{lease}/result", RESULT_BODY)
        if status == 200:
            counts[0] += 1


async def round_trips(port: int, seats: list[Seat], seconds: float) -> tuple[float, float]:
    """(round trips per second, seconds measured)."""
    conns = [Connection(port, s.authorization, s.source) for s in seats]
    counts = [0]
    # Warm up the connections (and the server) before the clock starts.
    await asyncio.gather(*(c.request("GET", "/v1/health") for c in conns))
    start = time.monotonic()
    await asyncio.gather(
        *(
            seller_loop(c, s.seat, start + seconds, counts)
            for c, s in zip(conns, seats, strict=True)
        )
    )
    elapsed = time.monotonic() - start
    for c in conns:
        c.close()
    return counts[0] / elapsed, elapsed


async def wake_up_latency(
    port: int, seats: list[Seat], buyer_auth: str, program: str, rounds: int
) -> list[float]:
    buyer = Connection(port, buyer_auth)
    submit = json.dumps(
        {"program": program, "inputs": [base64.b64encode(b"x").decode()], "replicas": 1}
    ).encode()
    latencies: list[float] = []
    for _ in range(rounds):
        pollers = [Connection(port, s.authorization, s.source) for s in seats]
        leases = [
            asyncio.create_task(
                c.request("POST", "/v1/lease", json.dumps({"wait": 30, "seat": s.seat}).encode())
            )
            for c, s in zip(pollers, seats, strict=True)
        ]
        await asyncio.sleep(0.2)  # every poller is waiting now
        start = time.monotonic()
        await buyer.request("POST", "/v1/jobs", submit)
        _, pending = await asyncio.wait(leases, return_when=asyncio.FIRST_COMPLETED)
        latencies.append(time.monotonic() - start)
        for task in pending:
            task.cancel()
        for c in pollers:
            c.close()
        await asyncio.sleep(0.1)
    buyer.close()
    return latencies


@contextlib.contextmanager
def market_database(work: Path, server: str | None) -> Iterator[Location]:
    """A SQLite file in `work`, or a new database on the PostgreSQL `server` (dropped after)."""
    if server is None:
        yield work / "market.db"
        return
    name = f"bench_{uuid.uuid4().hex[:12]}"
    url = urlsplit(server)
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
        try:
            yield f"{url.scheme}://{url.netloc}/{name}" + (f"?{url.query}" if url.query else "")
        finally:
            admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


def start_market(
    work: Path, sellers: int, db: Location, seats_per_host: int = 4
) -> tuple[MarketProcess, BuyerClient, str, list[Seat]]:
    """A market with a buyer holding coins, the fsdither program, and `sellers` seats of
    hosts enrolled from distinct loopback addresses."""
    program = build_job([JOB_SOURCE], work / "fsdither.job").read_bytes()
    market = MarketProcess(work, db=db).start()
    api_key = market.account("bench", coins=10**9).api_key
    buyer = BuyerClient(market.url, api_key)
    sha = buyer.upload_program(program)
    seats: list[Seat] = []
    for i in range(0, sellers, seats_per_host):
        order = market.order("bench", work / f"o{i}.cpu")
        source = f"127.0.1.{i // seats_per_host + 1}"
        host = market.enroll(order, seats=seats_per_host, source=source)
        auth = basic(*host.auth)
        seats += [Seat(auth, source, n) for n in range(min(seats_per_host, sellers - i))]
    return market, buyer, sha, seats


def _trust_every_host(db: Location, program: str, valid: int) -> None:
    """Give every host `valid` consecutive valid results for the program, as a fleet that
    has run it for a while would have."""
    conn = connect(db)
    conn.execute(
        "INSERT INTO trust (host_id, program, valid) SELECT id, ?, ? FROM hosts",
        (program, valid),
    )
    conn.close()


def _jobs_done(db: Location) -> int:
    conn = connect(db)
    done = int(conn.execute("SELECT count(*) FROM jobs WHERE state = 'done'").fetchone()[0])
    conn.close()
    return done


def bench_round_trips(
    sellers: int, seconds: float, mode: str, server: str | None
) -> tuple[float, float]:
    """(round trips/s, accepted jobs/s) in one validation mode: 'trust-all' (replicas 1),
    'from-scratch' (adaptive, no host trusted at the start: two hosts per job until each
    earns trust during the run) or 'trusted' (adaptive, every host at the trust floor
    n = 10, where the most results are replicated)."""
    replicas = 1 if mode == "trust-all" else None
    with tempfile.TemporaryDirectory() as tmp, market_database(Path(tmp), server) as db:
        market, buyer, sha, seats = start_market(Path(tmp), sellers, db)
        try:
            if mode == "trusted":
                _trust_every_host(market.db, sha, trust.TRUSTED)
            # More jobs than the run can take: sellers never find the queue empty.
            for start in range(0, int(seconds * 3000), 1000):
                inputs = [str(i).encode() for i in range(start, start + 1000)]
                buyer.submit(sha, inputs, replicas=replicas)
            rate, elapsed = asyncio.run(round_trips(market.port, seats, seconds))
            accepted = _jobs_done(market.db) / elapsed
        finally:
            market.stop()
    print(
        f"market [{mode}]: {rate:.0f} lease+result round trips/s, {accepted:.0f} accepted "
        f"jobs/s with {sellers} concurrent sellers on loopback, {_engine(server)}"
    )
    return rate, accepted


def _engine(server: str | None) -> str:
    return "SQLite with fsync per commit" if server is None else "PostgreSQL"


async def batch_loop(conn: Connection, seats: list[int], stop: float, counts: list[int]) -> None:
    """A host leasing all its seats in one request and posting their results in one."""
    lease_body = json.dumps({"wait": 0, "seats": seats}).encode()
    result = json.loads(RESULT_BODY)
    while time.monotonic() < stop:
        status, body = await conn.request("POST", "/v1/leases", lease_body)
        if status != 200:
            continue
        leases = [doc["lease"] for doc in json.loads(body)["leases"]]
        results = json.dumps({"results": [{"lease": n, **result} for n in leases]}).encode()
        status, body = await conn.request("POST", "/v1/results", results)
        if status == 200:
            counts[0] += sum(a["status"] == 200 for a in json.loads(body)["results"])


async def batch_round_trips(port: int, seats: list[Seat], seconds: float) -> float:
    """Results per second with one connection per host, batching its seats."""
    hosts: dict[tuple[str, str], list[int]] = {}
    for s in seats:
        hosts.setdefault((s.authorization, s.source), []).append(s.seat)
    conns = {key: Connection(port, *key) for key in hosts}
    counts = [0]
    await asyncio.gather(*(c.request("GET", "/v1/health") for c in conns.values()))
    start = time.monotonic()
    await asyncio.gather(
        *(batch_loop(conns[key], n, start + seconds, counts) for key, n in hosts.items())
    )
    elapsed = time.monotonic() - start
    for c in conns.values():
        c.close()
    return counts[0] / elapsed


def bench_batch(
    sellers: int, seconds: float, batch: int, server: str | None
) -> tuple[float, float]:
    """(single, batch) accepted results/s for small jobs (replicas 1), the same seats
    (`batch` per host) leasing one by one, then each host all its seats at once."""
    figures = []
    for batched in (False, True):
        with tempfile.TemporaryDirectory() as tmp, market_database(Path(tmp), server) as db:
            market, buyer, sha, seats = start_market(Path(tmp), sellers, db, batch)
            try:
                for start in range(0, int(seconds * 6000), 1000):
                    inputs = [str(i).encode() for i in range(start, start + 1000)]
                    buyer.submit(sha, inputs, replicas=1)
                run = batch_round_trips if batched else round_trips
                figure = asyncio.run(run(market.port, seats, seconds))
                figures.append(figure if isinstance(figure, float) else figure[0])
            finally:
                market.stop()
    single, batched_rate = figures
    print(
        f"market: {single:.0f} results/s leasing seat by seat, {batched_rate:.0f} results/s "
        f"leasing {batch} seats per request ({batched_rate / single:.1f}x, goal >= 3x), "
        f"{sellers} seats, {_engine(server)}"
    )
    return single, batched_rate


def bench_wake_up(pollers: int, rounds: int, server: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp, market_database(Path(tmp), server) as db:
        market, buyer, sha, seats = start_market(Path(tmp), pollers, db, seats_per_host=1)
        try:
            api_key = buyer.session.headers["Authorization"]
            latencies = asyncio.run(wake_up_latency(market.port, seats, str(api_key), sha, rounds))
        finally:
            market.stop()
    median = statistics.median(latencies) * 1000
    print(
        f"market: long-poll wake-up submit->lease median {median:.1f} ms, "
        f"max {max(latencies) * 1000:.1f} ms over {rounds} rounds with {pollers} "
        f"waiting sellers, {_engine(server)} (goal <= 50 ms)"
    )


def _database(conn: Database, networks: int) -> tuple[int, str, list[hosts.Host]]:
    """A buyer with coins, a program, and one host on each of `networks` networks."""
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("BEGIN")
    buyer = accounts.create_account(conn, "buyer").id
    accounts.create_account(conn, "seller")
    ledger.grant(conn, buyer, 10**15, 0)
    program = b"bench program"
    sha = hashlib.sha256(program).hexdigest()
    jobs.store_program(conn, buyer, program, sha)
    fleet = []
    for i in range(networks):
        order = accounts.create_order(conn, "seller").order_id
        enrolled = hosts.enroll(conn, order, 1, f"10.0.{i // 250}.{i % 250 + 1}")
        found = hosts.authenticate(conn, enrolled.host_id, enrolled.secret)
        assert found is not None
        fleet.append(found)
    conn.execute("COMMIT")
    return buyer, sha, fleet


def bench_writer(mode: str, count: int) -> float:
    """Accepted jobs per second of the market's writer alone (no HTTP, no fsync): the
    database work of a lease and a result, one transaction each, as the writer runs them."""
    with tempfile.TemporaryDirectory() as tmp:
        conn = open_database(Path(tmp) / "writer.db")
        buyer, sha, fleet = _database(conn, 50)
        if mode == "trusted":
            conn.executemany(
                "INSERT INTO trust (host_id, program, valid) VALUES (?, ?, ?)",
                [(h.id, sha, trust.TRUSTED) for h in fleet],
            )
        limits = JobLimits(cpu_seconds=10, wall_seconds=300.0)
        replicas = 1 if mode == "trust-all" else None
        conn.execute("BEGIN")
        jobs.submit_jobs(conn, buyer, sha, [b"x"] * count, limits, replicas)
        conn.execute("COMMIT")
        done = agreement.ResultIn("ok", 0, b"out", 1.0, 1.0, "")
        began = time.perf_counter()
        for turn in range(count):
            host = fleet[turn % len(fleet)]
            conn.execute("BEGIN")
            lease = leasing.grant_lease(conn, host, 0, (1 << 40, 1 << 20), 60, 1.0)
            conn.execute("COMMIT")
            if lease is None:
                break
            conn.execute("BEGIN")
            agreement.record_result(conn, lease.id, host.id, done, 1.0)
            conn.execute("COMMIT")
        took = time.perf_counter() - began
        accepted = conn.execute("SELECT count(*) FROM jobs WHERE state = 'done'").fetchone()[0]
        conn.close()
    return float(accepted) / took


def bench_ledger_check(count: int) -> None:
    """Settle `count` jobs in a market database (two agreeing hosts for most, a cancel for
    every tenth), then time ledger.check over its books."""
    with tempfile.TemporaryDirectory() as tmp:
        conn = open_database(Path(tmp) / "ledger.db")
        buyer, sha, pair = _database(conn, 2)
        conn.execute("BEGIN")
        limits = JobLimits(cpu_seconds=10, wall_seconds=300.0)
        done = agreement.ResultIn("ok", 0, b"out", 1.0, 1.0, "")
        for start in range(0, count, 1000):
            ids = jobs.submit_jobs(conn, buyer, sha, [b"x"] * min(1000, count - start), limits, 2)
            for job_id in ids:
                if job_id % 10 == 0:
                    agreement.cancel(conn, buyer, job_id, 1.0)
                    continue
                for host in pair:
                    lease = leasing.grant_lease(conn, host, 0, (1 << 40, 1 << 20), 60, 1.0)
                    assert lease is not None and lease.job_id == job_id
                    agreement.record_result(conn, lease.id, host.id, done, 1.0)
        conn.execute("COMMIT")
        transfers = conn.execute("SELECT count(*) FROM transfers").fetchone()[0]
        began = time.perf_counter()
        problems = ledger.check(conn)
        took = time.perf_counter() - began
        conn.close()
    assert problems == [], problems
    print(
        f"ledger: check over {count} jobs ({transfers} transfers) took {took:.2f} s; "
        "the books add up"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sellers", type=int, default=200, help="concurrent simulated sellers")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each throughput run")
    parser.add_argument("--pollers", type=int, default=20, help="sellers waiting for a job")
    parser.add_argument("--rounds", type=int, default=30, help="wake-up latency samples")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each mode, alternating")
    parser.add_argument("--ledger-jobs", type=int, default=100_000, help="jobs in the ledger check")
    parser.add_argument(
        "--postgres",
        metavar="URL",
        help="run the market on a new database of this PostgreSQL server per run "
        "(e.g. postgresql:///postgres?host=/var/run/postgresql) instead of SQLite",
    )
    parser.add_argument(
        "--batch",
        type=int,
        metavar="N",
        help="only compare batch leasing (N seats per host in one request, their results "
        "posted in one) with leasing seat by seat, for small jobs",
    )
    args = parser.parse_args()
    if args.batch is not None:
        bench_batch(args.sellers, args.seconds, args.batch, args.postgres)
        return
    # Modes alternate, and each figure is the median of its runs: on a shared machine the
    # load drifts between runs, and alternating keeps it from favouring one mode.
    runs: dict[str, list[float]] = {"trust-all": [], "from-scratch": [], "trusted": []}
    for _ in range(args.repeat):
        for mode, accepted in runs.items():
            accepted.append(bench_round_trips(args.sellers, args.seconds, mode, args.postgres)[1])
    trust_all, trusted = (statistics.median(runs[m]) for m in ("trust-all", "trusted"))
    print(
        f"market: median accepted jobs/s: trust-all {trust_all:.0f}, from scratch "
        f"{statistics.median(runs['from-scratch']):.0f}, trusted {trusted:.0f}: validation once "
        f"hosts are trusted costs {100 * (1 - trusted / trust_all):.1f}% (goal <= 10%)"
    )
    writer: dict[str, list[float]] = {"trust-all": [], "trusted": []}
    for _ in range(args.repeat):
        for mode, accepted in writer.items():
            accepted.append(bench_writer(mode, 3000))
    alone, checked = (statistics.median(writer[m]) for m in ("trust-all", "trusted"))
    print(
        f"market writer alone: median accepted jobs/s: trust-all {alone:.0f}, trusted "
        f"{checked:.0f}: validation costs {100 * (1 - checked / alone):.1f}% (goal <= 10%)"
    )
    bench_wake_up(args.pollers, args.rounds, args.postgres)
    bench_ledger_check(args.ledger_jobs)


if __name__ == "__main__":
    main()
