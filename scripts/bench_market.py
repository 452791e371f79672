"""Market figures over HTTP: lease + result round trips per second with many simulated
sellers, on SQLite and on PostgreSQL behind 1, 2 and 4 market instances; the same with a
queue of 1,000,000 waiting jobs (and the plan of the lease query); CPU seconds per round
trip in the market processes, in PostgreSQL and in this client (on the same cores: with
two instances it is no cheaper); the capacity that gives on paper; the cost
of validation (two hosts per job until they earn trust) next to `--replicas 1`; and the
long-poll wake-up latency from a submit to the lease it releases.

Runs real `livecd market serve` processes on loopback (SQLite, WAL, fsync per commit; or a
fresh database of the PostgreSQL server at --postgres for each run) and drives them from one
asyncio process with a minimal keep-alive HTTP/1.1 client, so that the client costs as
little CPU as possible. Simulated sellers are seats of hosts enrolled from distinct loopback
addresses (127.0.1.N), as distinct machines would be, spread over the instances. Goals:
>= 1000 round trips/s with >= 200 sellers on two cores; PostgreSQL >= 0.8x SQLite with one
instance and two instances >= one; validation once hosts are trusted costs <= 10% of the
accepted jobs per second; <= 50 ms median wake-up latency. The writer alone and the ledger
check are in bench_market_writer.py.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import dataclasses
import functools
import json
import os
import re
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import psycopg

from cpushare.jail import JobResult, Outcome
from cpushare.protocol import result_document
from livecd.market_process import MarketProcess
from livecd.toolchain import FSDITHER_SOURCE, build_job
from market import leasing, trust
from market.buyer import BuyerClient
from market.dialect import Location, is_postgres
from market.store import connect

RESULT_BODY = json.dumps(
    result_document(JobResult(Outcome.OK, 0, b"P4\n1 1\n\x00", 0.01, 0.01, ""))
).encode()
DEFAULT_POSTGRES = "postgresql:///postgres?host=/var/run/postgresql"
# Jobs queued for each second of a run: more than single and batch leasing can take, so that
# sellers never find the queue empty (a run that empties it stops with an error: its rate
# would be the queue's, not the market's; 3,000 a second capped SQLite's single leasing).
QUEUED_PER_SECOND = {False: 8000, True: 16000}
# The paper fleet: machines that each finish a job every JOB_MINUTES.
FLEET = 100_000
JOB_MINUTES = 10


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
    """One simulated seller: a seat of a host, with the host's credentials and address,
    and the port of the market instance it talks to."""

    authorization: str
    source: str
    seat: int
    port: int


# The client reads of the market's replies only what it needs, without decoding them: the
# leases' ids (a lease's first key: its input, program and limits hold no quote), and how
# many results were taken (an error's text holds no unescaped quote either). On the same two
# cores as the market, json.loads of every reply cost the client a third of its CPU per
# round trip in batch leasing, and shared it with the market's.
_LEASE = re.compile(rb'"lease":\s*(\d+)')
_ACCEPTED = b'"status":200'


def basic(user: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()


async def round_trip(conn: Connection, seat: int) -> int:
    """One seller's step: lease a job, post its result; the results the market took."""
    status, body = await conn.request("POST", "/v1/lease", b'{"wait":0,"seat":%d}' % seat)
    if status != 200:
        return 0
    lease = int(_LEASE.findall(body)[0])
    status, _ = await conn.request("POST", f"/v1/leases/{lease}/result", RESULT_BODY)
    return int(status == 200)


class BatchHost:
    """One host in batch mode, as the CD's sellers do it: a lease for each of its seats in one
    request, then their results posted with the next seats' lease request (`next`) in one
    round trip, step after step."""

    def __init__(self, conn: Connection, seats: list[int]) -> None:
        self.conn = conn
        self.ask = json.dumps({"seats": seats}).encode()
        self.leases: list[bytes] = []

    async def step(self) -> int:
        """Post the results of the leases held with the next lease request (or, holding
        none, lease); the results the market took."""
        if not self.leases:
            status, reply = await self.conn.request(
                "POST", "/v1/leases", b'{"wait":0,%s' % self.ask[1:]
            )
            self.leases = _LEASE.findall(reply) if status == 200 else []
            return 0
        results = b",".join(b'{"lease":%s,%s' % (n, RESULT_BODY[1:]) for n in self.leases)
        body = b'{"results":[%s],"next":%s}' % (results, self.ask)
        status, reply = await self.conn.request("POST", "/v1/results", body)
        if status != 200:
            self.leases = []
            return 0
        answers, _, following = reply.partition(b'"next":')
        self.leases = _LEASE.findall(following)
        return answers.count(_ACCEPTED)


async def seller_loop(
    conn: Connection, step: Callable[[], Awaitable[int]], stop: float, counts: list[int]
) -> None:
    while time.monotonic() < stop:
        # Not `counts[0] += await ...`: that reads counts[0] before the await.
        done = await step()
        counts[0] += done


async def round_trips(
    seats: list[Seat],
    seconds: float,
    batch: bool,
    warm_up: float = 0.0,
    mark: Callable[[], None] | None = None,
) -> tuple[float, float]:
    """(round trips per second, seconds measured): a connection per seat stepping on its
    own, or in batch mode a connection per host stepping for all its seats at once. The
    sellers step for `warm_up` seconds before the clock starts (the market's first
    batches, plans and caches are not its steady state); `mark` is called when it starts,
    on the event loop, so that the caller reads the CPU spent from then on."""
    loops: list[tuple[Connection, Callable[[], Awaitable[int]]]] = []
    if batch:
        hosts: dict[tuple[str, str, int], list[int]] = {}
        for s in seats:
            hosts.setdefault((s.authorization, s.source, s.port), []).append(s.seat)
        for (authorization, source, port), numbers in hosts.items():
            conn = Connection(port, authorization, source)
            loops.append((conn, BatchHost(conn, numbers).step))
    else:
        for s in seats:
            conn = Connection(s.port, s.authorization, s.source)
            loops.append((conn, functools.partial(round_trip, conn, s.seat)))
    conns = [conn for conn, _ in loops]
    counts = [0]
    # Warm up the connections (and the server) before the clock starts.
    await asyncio.gather(*(c.request("GET", "/v1/health") for c in conns))
    began = time.monotonic()
    stop = began + warm_up + seconds
    sellers = asyncio.gather(*(seller_loop(c, step, stop, counts) for c, step in loops))
    if warm_up > 0:
        await asyncio.sleep(warm_up)
    warmed = counts[0]
    start = time.monotonic()
    if mark is not None:
        mark()
    await sellers
    elapsed = time.monotonic() - start
    counts[0] -= warmed
    for c in conns:
        c.close()
    return counts[0] / elapsed, elapsed


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


@dataclass
class Market:
    """The instances of one market on one database, a buyer, its program and the seats."""

    instances: list[MarketProcess]
    buyer: BuyerClient
    program: str
    seats: list[Seat]

    @property
    def db(self) -> Location:
        return self.instances[0].db

    def stop(self) -> None:
        for instance in self.instances:
            instance.stop()


@contextlib.contextmanager
def running_market(
    sellers: int, server: str | None, instances: int = 1, seats_per_host: int = 4
) -> Iterator[Market]:
    """A market of `instances` processes with a buyer holding coins, the fsdither program,
    and `sellers` seats of hosts enrolled from distinct loopback addresses, the hosts
    spread over the instances in turn."""
    with tempfile.TemporaryDirectory() as tmp, market_database(Path(tmp), server) as db:
        work = Path(tmp)
        program = build_job([FSDITHER_SOURCE], work / "fsdither.job").read_bytes()
        processes = [MarketProcess(work / f"i{n}", db=db) for n in range(instances)]
        try:
            for process in processes:
                process.start()
            first = processes[0]
            buyer = BuyerClient(first.url, first.account("bench", coins=10**9).api_key)
            sha = buyer.upload_program(program)
            seats: list[Seat] = []
            for n, i in enumerate(range(0, sellers, seats_per_host)):
                source = f"127.0.1.{n + 1}"
                host = first.enroll(first.order("bench"), seats=seats_per_host, source=source)
                port = processes[n % instances].port
                count = min(seats_per_host, sellers - i)
                seats += [Seat(basic(*host.auth), source, s, port) for s in range(count)]
            yield Market(processes, buyer, sha, seats)
        finally:
            for process in processes:
                process.stop()


def fill_queue(market: Market, jobs: int) -> None:
    """Queue `jobs` jobs through the API (1,000 a request)."""
    for start in range(0, jobs, 1000):
        inputs = [str(i).encode() for i in range(start, min(jobs, start + 1000))]
        market.buyer.submit(market.program, inputs, replicas=1)


def deepen_queue(db: Location, jobs: int) -> None:
    """Copy the newest job `jobs` times in SQL (the API would take minutes): a queue that
    deep behind the jobs the sellers take first."""
    conn = connect(db)
    postgres = is_postgres(conn)
    columns = (
        "account_id, program, input, cpu_seconds, wall_seconds, memory_bytes, output_bytes, "
        "replicas, max_results, state, slots, created, adaptive, reserved"
    )
    numbers = (
        "generate_series(1, ?) AS n"
        if postgres
        else "(WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
        "SELECT i FROM n) AS n"
    )
    conn.execute(
        f"INSERT INTO jobs ({columns}) SELECT {columns} FROM {numbers}, "
        f"(SELECT * FROM jobs ORDER BY id DESC LIMIT 1) AS newest",
        (jobs,),
    )
    # As the market's own statistics keeper would (market.pgstore.Analyzer); a SQLite
    # market keeps none.
    if postgres:
        conn.execute("ANALYZE")
    conn.close()


def lease_plan(db: Location, runs: int = 200) -> tuple[list[str], bool, float]:
    """The database's plan for the lease query (market.leasing.ready_job with the lock a
    lease takes: the query whose jobs a lease's UPDATE takes), whether it walks an index
    rather than the queue, and its milliseconds per run."""
    conn = connect(db)
    postgres = is_postgres(conn)
    sql, parameters = leasing.ready_statement(postgres, "10.9.9.9", (1 << 40, 1 << 20), lock=True)
    explain = "EXPLAIN " if postgres else "EXPLAIN QUERY PLAN "
    rows = conn.execute(explain + sql, parameters).fetchall()
    began = time.perf_counter()
    for _ in range(runs):
        conn.execute(sql, parameters).fetchone()
    took = (time.perf_counter() - began) / runs
    conn.close()
    lines = [str(row[0]) if postgres else str(row[-1]) for row in rows]
    # A plan that reads the whole queue: a sequential scan (PostgreSQL) or a bare SCAN.
    whole = [line for line in lines if "Seq Scan on jobs" in line or line.strip() == "SCAN jobs"]
    return lines, not whole, took * 1000


def _cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process so far; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _backends(db: Location) -> list[int]:
    """The PostgreSQL server processes serving this database's connections."""
    if not isinstance(db, str):
        return []
    with psycopg.connect(db, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid != pg_backend_pid()"
        ).fetchall()
    return [int(row[0]) for row in rows]


@dataclass(frozen=True)
class Figures:
    rate: float  # lease + result round trips per second
    market_ms: float  # CPU milliseconds per round trip in the market processes
    postgres_ms: float  # ... and in the PostgreSQL server processes of its database
    client_ms: float  # ... and in this benchmark's own client (the sellers)


def measure(market: Market, seconds: float, batch: bool = False, warm_up: float = 0.0) -> Figures:
    """The figures of `seconds` of round trips after `warm_up` seconds of them."""
    pids = [p.process.pid for p in market.instances if p.process is not None]
    backends = _backends(market.db)

    def cpu() -> tuple[list[float], list[float], list[float]]:
        return [_cpu(pid) for pid in pids], [_cpu(pid) for pid in backends], [_cpu(os.getpid())]

    before = cpu()

    def mark() -> None:
        nonlocal before
        before = cpu()

    rate, elapsed = asyncio.run(round_trips(market.seats, seconds, batch, warm_up, mark))
    after = cpu()
    trips = max(1.0, rate * elapsed)
    spent = [1000 * (sum(a) - sum(b)) / trips for a, b in zip(after, before, strict=True)]
    return Figures(rate, *spent)


def _engine(server: str | None) -> str:
    return "SQLite" if server is None else "PostgreSQL"


def load_average() -> str:
    """The host's load averages over 1, 5 and 15 minutes, as /proc/loadavg gives them."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def bench_scale(
    sellers: int,
    instances: int,
    seconds: float,
    server: str | None,
    batch: bool = False,
    warm_up: float = 0.0,
) -> Figures:
    queued = int((warm_up + seconds) * QUEUED_PER_SECOND[batch])
    with running_market(sellers, server, instances) as market:
        fill_queue(market, queued)
        figures = measure(market, seconds, batch, warm_up)
    if figures.rate * (warm_up + seconds) > 0.9 * queued:
        raise SystemExit(
            f"bench_market: {figures.rate:.0f} round trips/s nearly emptied the {queued:,} "
            "jobs queued: raise QUEUED_PER_SECOND, the rate measured is the queue's"
        )
    print(
        f"market {_engine(server):10} {instances} instance(s) {sellers:5} sellers "
        f"{'batch ' if batch else 'single'}: "
        f"{figures.rate:5.0f} round trips/s, CPU per round trip: market "
        f"{figures.market_ms:.3f} ms"
        + (f", PostgreSQL {figures.postgres_ms:.3f} ms" if server else "")
        + f" (client {figures.client_ms:.3f} ms), load {load_average()}",
        flush=True,
    )
    return figures


def bench_deep_queue(depth: int, seconds: float, server: str | None) -> None:
    """Round trips/s and the lease query's time with a short queue, then with `depth`
    more jobs waiting behind it."""
    rates, query_ms = [], []
    plan: list[str] = []
    indexed, filled = False, 0.0
    queued = int(seconds * QUEUED_PER_SECOND[False])
    for deep in (False, True):
        with running_market(200, server) as market:
            fill_queue(market, queued)
            if deep:
                began = time.monotonic()
                deepen_queue(market.db, depth)
                filled = time.monotonic() - began
            plan, indexed, took = lease_plan(market.db)
            query_ms.append(took)
            rates.append(measure(market, seconds).rate)
    print(
        f"market {_engine(server)}: {rates[0]:.0f} round trips/s and {query_ms[0]:.2f} ms per "
        f"lease query with {queued} jobs queued; {rates[1]:.0f} and "
        f"{query_ms[1]:.2f} ms with {depth:,} more waiting (queued in {filled:.1f} s); its plan "
        + ("walks an index:" if indexed else "does NOT walk an index:")
    )
    for line in plan:
        print(f"    {line}")


def bench_validation(sellers: int, seconds: float, repeat: int) -> None:
    """Accepted jobs/s (SQLite) in three modes: 'trust-all' (replicas 1), 'from-scratch'
    (adaptive, no host trusted at the start) and 'trusted' (adaptive, every host at the
    trust floor n = 10, where the most results are replicated)."""
    runs: dict[str, list[float]] = {"trust-all": [], "from-scratch": [], "trusted": []}
    # Modes alternate, and each figure is the median of its runs: on a shared machine the
    # load drifts between runs, and alternating keeps it from favouring one mode.
    for _ in range(repeat):
        for mode, accepted in runs.items():
            with running_market(sellers, None) as market:
                if mode == "trusted":
                    conn = connect(market.db)
                    conn.execute(
                        "INSERT INTO trust (host_id, program, valid) SELECT id, ?, ? FROM hosts",
                        (market.program, trust.TRUSTED),
                    )
                    conn.close()
                replicas = 1 if mode == "trust-all" else None
                for start in range(0, int(seconds * 3000), 1000):
                    inputs = [str(i).encode() for i in range(start, start + 1000)]
                    market.buyer.submit(market.program, inputs, replicas=replicas)
                rate, elapsed = asyncio.run(round_trips(market.seats, seconds, False))
                conn = connect(market.db)
                done = conn.execute("SELECT count(*) FROM jobs WHERE state = 'done'").fetchone()
                conn.close()
            accepted.append(int(done[0]) / elapsed)
            print(f"market [{mode}]: {rate:.0f} round trips/s, {accepted[-1]:.0f} accepted jobs/s")
    trust_all, trusted = (statistics.median(runs[m]) for m in ("trust-all", "trusted"))
    print(
        f"market: median accepted jobs/s: trust-all {trust_all:.0f}, from scratch "
        f"{statistics.median(runs['from-scratch']):.0f}, trusted {trusted:.0f}: validation once "
        f"hosts are trusted costs {100 * (1 - trusted / trust_all):.1f}% (goal <= 10%)"
    )


async def wake_up_latency(market: Market, rounds: int) -> list[float]:
    buyer = Connection(market.seats[0].port, str(market.buyer.session.headers["Authorization"]))
    submit = json.dumps(
        {"program": market.program, "inputs": [base64.b64encode(b"x").decode()], "replicas": 1}
    ).encode()
    latencies: list[float] = []
    for _ in range(rounds):
        pollers = [Connection(s.port, s.authorization, s.source) for s in market.seats]
        body = [json.dumps({"wait": 30, "seat": s.seat}).encode() for s in market.seats]
        leases = [
            asyncio.create_task(c.request("POST", "/v1/lease", b))
            for c, b in zip(pollers, body, strict=True)
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


def bench_wake_up(pollers: int, rounds: int, server: str | None) -> None:
    with running_market(pollers, server, seats_per_host=1) as market:
        latencies = asyncio.run(wake_up_latency(market, rounds))
    print(
        f"market {_engine(server)}: long-poll wake-up submit->lease median "
        f"{statistics.median(latencies) * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms over "
        f"{rounds} rounds with {pollers} waiting sellers (goal <= 50 ms)"
    )


Key = tuple[str, int, int, bool]  # engine, sellers, instances, batch leasing


def capacity(figures: dict[Key, Figures]) -> None:
    """What the paper fleet needs, next to what each engine did here."""
    need = FLEET / (JOB_MINUTES * 60)
    print(
        f"capacity: {FLEET:,} machines each finishing a job every {JOB_MINUTES} minutes need "
        f"{need:.0f} round trips/s; this machine has {os.cpu_count()} cores"
    )
    for engine in ("SQLite", "PostgreSQL"):
        runs = {key: f for key, f in figures.items() if key[0] == engine}
        if not runs:
            continue
        (_, sellers, instances, batch), best = max(runs.items(), key=lambda kv: kv[1].rate)
        cores = need * (best.market_ms + best.postgres_ms) / 1000
        print(
            f"capacity {engine}: best {best.rate:.0f} round trips/s ({instances} instance(s), "
            f"{sellers} sellers{', batch leasing' if batch else ''}) = "
            f"{best.rate / need:.1f}x the fleet; at its CPU per round trip "
            f"the fleet needs {cores:.2f} cores busy"
        )


def spread(values: list[float], digits: int = 2) -> str:
    """The median of `values`, and their range when there are several."""
    middle = f"{statistics.median(values):.{digits}f}"
    if len(values) == 1:
        return middle
    return f"{middle} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def summary(runs: list[dict[Key, Figures]]) -> None:
    """Each configuration's medians and ranges over the runs (printed only for several)."""
    print(f"market: medians (and ranges) of {len(runs)} runs, load {load_average()}")
    for key in runs[0]:
        engine, sellers, instances, batch = key
        each = [run[key] for run in runs]
        print(
            f"market {engine:10} {instances} instance(s) {sellers:5} sellers "
            f"{'batch ' if batch else 'single'}: "
            f"{spread([f.rate for f in each], 0)} round trips/s, CPU per round trip: market "
            f"{spread([f.market_ms for f in each], 3)} ms"
            + (
                f", PostgreSQL {spread([f.postgres_ms for f in each], 3)} ms"
                if engine == "PostgreSQL"
                else ""
            )
            + f" (client {spread([f.client_ms for f in each], 3)} ms)"
        )


def ratios(runs: list[dict[Key, Figures]], sellers: int, servers: list[str | None]) -> None:
    """The goals' ratios, each worked out within a run (its two sides measured minutes
    apart, not across runs) and printed as their median and range over the runs; beside
    each, the same ratio of the round trips one CPU second buys (market and PostgreSQL
    server processes together), steadier on a shared machine."""

    def each(a: Key, b: Key, figure: Callable[[Figures], float]) -> list[float]:
        return [figure(run[a]) / figure(run[b]) for run in runs if a in run and b in run]

    def rate(f: Figures) -> float:
        return f.rate

    def cpu(f: Figures) -> float:
        return f.market_ms + f.postgres_ms

    lite, pg = ("SQLite", sellers, 1, False), ("PostgreSQL", sellers, 1, False)
    if found := each(pg, lite, rate):
        print(
            f"market {sellers} sellers, one instance: PostgreSQL at {spread(found)}x SQLite "
            f"(goal >= 0.8x); by CPU per round trip {spread(each(lite, pg, cpu))}x"
        )
    for server in servers:
        single, batched = ((_engine(server), sellers, 1, b) for b in (False, True))
        if found := each(batched, single, rate):
            print(
                f"market {sellers} sellers, one instance, {_engine(server)}: batch leasing "
                f"(4 seats a request) at {spread(found, 1)}x single, "
                f"{spread(each(single, batched, cpu), 1)}x less CPU per round trip (goal >= 3x)"
            )
    for server in servers:
        for batch in (False, True):
            one, two = ((_engine(server), sellers, n, batch) for n in (1, 2))
            if found := each(two, one, rate):
                print(
                    f"market {sellers} sellers, {_engine(server)}, "
                    f"{'batch' if batch else 'single'} leasing: two instances at "
                    f"{spread(found)}x one (goal >= 1x); by CPU per round trip "
                    f"{spread(each(one, two, cpu))}x"
                )


def scale(
    sellers_counts: list[int],
    instance_counts: list[int],
    seconds: float,
    servers: list[str | None],
    modes: list[bool],
    repeats: int = 1,
    warm_up: float = 0.0,
) -> None:
    """Round trips/s and CPU per round trip for each count of sellers and instances, engine
    and leasing mode; the ratios of the goals where both sides ran; the paper fleet.

    With `repeats` runs the configurations take turns, all of them once a run, so that the
    host's load drifting between runs falls on all of them alike; then each one's medians
    and ranges, and each goal's ratio worked out within each run. One run's figures on a
    shared machine are one sample: the same code has landed on both sides of a goal."""
    configurations = [
        (sellers, instances, server, batch)
        for sellers in sellers_counts
        for instances in instance_counts
        for server in servers
        for batch in modes
    ]
    runs: list[dict[Key, Figures]] = []
    for run in range(repeats):
        if repeats > 1:
            print(f"market: run {run + 1} of {repeats}, load {load_average()}", flush=True)
        figures: dict[Key, Figures] = {}
        # Every other run in the opposite order, so that no configuration always runs
        # first (on a machine not yet loaded by the run) or last.
        for sellers, instances, server, batch in configurations[:: -1 if run % 2 else 1]:
            key = (_engine(server), sellers, instances, batch)
            figures[key] = bench_scale(sellers, instances, seconds, server, batch, warm_up)
        # In the configurations' own order, whichever order they ran in.
        runs.append(
            {(_engine(v), s, n, b): figures[(_engine(v), s, n, b)] for s, n, v, b in configurations}
        )
    if repeats > 1:
        summary(runs)
    for sellers in sellers_counts:
        ratios(runs, sellers, servers)
    capacity({key: median_figures([run[key] for run in runs]) for key in runs[0]})


def median_figures(each: list[Figures]) -> Figures:
    """Each figure's median over the runs."""
    names = [field.name for field in dataclasses.fields(Figures)]
    return Figures(*(statistics.median(getattr(f, name) for f in each) for name in names))


PARTS = ("scale", "deep", "wake", "validation")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each run")
    parser.add_argument(
        "--sellers", type=int, nargs="+", default=[200, 1000], help="simulated seller counts"
    )
    parser.add_argument(
        "--instances", type=int, nargs="+", default=[1, 2, 4], help="market instance counts"
    )
    parser.add_argument("--depth", type=int, default=1_000_000, help="jobs in the deep queue")
    parser.add_argument("--pollers", type=int, default=20, help="sellers waiting for a job")
    parser.add_argument("--rounds", type=int, default=30, help="wake-up latency samples")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each validation mode")
    parser.add_argument(
        "--runs",
        type=int,
        default=1,
        help="runs of the scale part, its configurations taking turns; then medians and "
        "ranges, and each goal's ratio within each run (default: %(default)s)",
    )
    parser.add_argument(
        "--warm-up",
        type=float,
        default=1.0,
        help="seconds of round trips before each scale run's clock starts, not counted "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--postgres",
        metavar="URL",
        default=os.environ.get("CPUSHARE_BENCH_POSTGRES", DEFAULT_POSTGRES),
        help="a PostgreSQL server on which each run gets a new database "
        "[env CPUSHARE_BENCH_POSTGRES; default: %(default)s]",
    )
    parser.add_argument("--sqlite-only", action="store_true", help="skip PostgreSQL")
    parser.add_argument("--postgres-only", action="store_true", help="skip SQLite")
    parser.add_argument(
        "--parts",
        nargs="+",
        choices=PARTS,
        default=list(PARTS),
        help="the parts to run (default: all of them)",
    )
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=("single", "batch"),
        default=["single", "batch"],
        help="leasing modes of the scale part (default: both)",
    )
    args = parser.parse_args()
    if args.runs < 1 or args.warm_up < 0:
        parser.error("--runs must be at least 1 and --warm-up not negative")
    if args.sqlite_only and args.postgres_only:
        parser.error("--sqlite-only and --postgres-only leave no engine to measure")
    servers: list[str | None] = [None, args.postgres]
    if args.sqlite_only:
        servers = [None]
    elif args.postgres_only:
        servers = [args.postgres]
    modes = [mode == "batch" for mode in args.modes]
    print(f"market bench on {os.cpu_count()} cores, load {load_average()}", flush=True)
    if "scale" in args.parts:
        scale(args.sellers, args.instances, args.seconds, servers, modes, args.runs, args.warm_up)
    if "deep" in args.parts:
        for server in servers:
            bench_deep_queue(args.depth, args.seconds, server)
    if "wake" in args.parts:
        for server in servers:
            bench_wake_up(args.pollers, args.rounds, server)
    if "validation" in args.parts:
        bench_validation(args.sellers[0], args.seconds, args.repeat)


if __name__ == "__main__":
    main()
