"""Market writer figures, without HTTP: accepted jobs per second of the market's writer
alone (the database work of a lease and a result, one transaction each, no fsync), with
validation on next to `--replicas 1`; the writer's CPU per job in batch leasing (hosts'
lease batches and their results together, as the market's writer runs them); and the time
of the coin ledger's check over 100,000 settled jobs. Steadier than the HTTP figures of
bench_market.py on a loaded machine.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import tempfile
import time
from pathlib import Path

from cpushare.limits import JobLimits
from market import accounts, agreement, hosts, jobs, leasing, ledger, trust
from market.dialect import Connection as Database
from market.store import open_database


def _database(conn: Database, networks: int, seats: int = 1) -> tuple[int, str, list[hosts.Host]]:
    """A buyer with coins, a program, and one host of `seats` on each of `networks` networks."""
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
        enrolled = hosts.enroll(conn, order, seats, f"10.0.{i // 250}.{i % 250 + 1}")
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


def bench_batch(count: int, hosts_at_once: int = 25, seats: int = 4) -> tuple[float, float]:
    """The writer's CPU microseconds per job (median over its transactions) in batch
    leasing, with `count` jobs queued (replicas 1): `hosts_at_once` hosts each lease
    `seats` jobs in one transaction (an operation each), then their results are recorded
    together in another (one operation, as the market gathers them); (lease, result)."""
    with tempfile.TemporaryDirectory() as tmp:
        conn = open_database(Path(tmp) / "batch.db")
        buyer, sha, fleet = _database(conn, hosts_at_once, seats)
        limits = JobLimits(cpu_seconds=10, wall_seconds=300.0)
        conn.execute("BEGIN")
        for start in range(0, count, 1000):
            inputs = [str(i).encode() for i in range(start, min(count, start + 1000))]
            jobs.submit_jobs(conn, buyer, sha, inputs, limits, 1)
        conn.execute("COMMIT")
        done = agreement.ResultIn("ok", 0, b"out", 0.01, 0.01, "")
        every = list(range(seats))
        lease_cpu: list[float] = []
        result_cpu: list[float] = []
        for _ in range(count // (hosts_at_once * seats)):
            began = time.thread_time()
            conn.execute("BEGIN")
            granted = [
                (host, leasing.grant_leases(conn, host, every, (1 << 40, 1 << 20), 60, 1.0))
                for host in fleet
            ]
            conn.execute("COMMIT")
            leased = time.thread_time()
            posted = [(host.id, lease.id, done) for host, leases in granted for lease in leases]
            conn.execute("BEGIN")
            agreement.record_many_checked(conn, posted, 1.0)[0].value()
            conn.execute("COMMIT")
            lease_cpu.append((leased - began) / len(posted))
            result_cpu.append((time.thread_time() - leased) / len(posted))
        conn.close()
    return statistics.median(lease_cpu) * 1e6, statistics.median(result_cpu) * 1e6


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
    parser.add_argument("--repeat", type=int, default=2, help="runs of each mode, alternating")
    parser.add_argument("--jobs", type=int, default=3000, help="jobs per writer run")
    parser.add_argument("--ledger-jobs", type=int, default=100_000, help="jobs in the ledger check")
    parser.add_argument("--batch-jobs", type=int, default=20_000, help="jobs per batch run")
    args = parser.parse_args()
    writer: dict[str, list[float]] = {"trust-all": [], "trusted": []}
    for _ in range(args.repeat):
        for mode, accepted in writer.items():
            accepted.append(bench_writer(mode, args.jobs))
    alone, checked = (statistics.median(writer[m]) for m in ("trust-all", "trusted"))
    print(
        f"market writer alone: median accepted jobs/s: trust-all {alone:.0f}, trusted "
        f"{checked:.0f}: validation costs {100 * (1 - checked / alone):.1f}% (goal <= 10%)"
    )
    batch = [bench_batch(args.batch_jobs) for _ in range(args.repeat)]
    lease, result = (statistics.median(run[i] for run in batch) for i in (0, 1))
    print(
        f"market writer, batch leasing (25 hosts x 4 seats a transaction, {args.batch_jobs} "
        f"jobs): CPU per job: lease {lease:.1f} us, result {result:.1f} us, "
        f"together {lease + result:.1f} us"
    )
    bench_ledger_check(args.ledger_jobs)


if __name__ == "__main__":
    main()
