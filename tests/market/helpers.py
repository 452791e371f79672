"""Building blocks for the market's database-level tests: accounts with coins, hosts on
networks of their own, jobs, results, and the books' balance."""

from __future__ import annotations

import hashlib

import psycopg

from cpushare.limits import JobLimits
from market import accounts, agreement, hosts, jobs, ledger, pgstore
from market.dialect import Connection
from market.errors import MarketError

LIMITS = (256 << 20, 60)
PROGRAM = b"\x7fELF program"
SHA = hashlib.sha256(PROGRAM).hexdigest()
COINS = 10**9  # millicoins granted to each buyer


def market_db(conn: Connection) -> Connection:
    """Accounts lab (a buyer, with coins), alice, bob and mallory (sellers)."""
    for name in ("lab", "alice", "bob", "mallory"):
        accounts.create_account(conn, name)
    ledger.grant(conn, accounts.account_id(conn, "lab"), COINS, 0)
    jobs.store_program(conn, 1, PROGRAM, SHA)
    return conn


def host(conn: Connection, account: str, network: str, seats: int = 1) -> hosts.Host:
    """A host enrolled with a new order of `account`, from `network`."""
    order = accounts.create_order(conn, account).order_id
    enrolled = hosts.enroll(conn, order, seats, network)
    found = hosts.authenticate(conn, enrolled.host_id, enrolled.secret)
    assert found is not None
    return found


def job(conn: Connection, replicas: int | None = None, cpu_seconds: int = 60) -> int:
    limits = JobLimits(cpu_seconds=cpu_seconds, wall_seconds=2.0 * cpu_seconds)
    return jobs.submit_jobs(conn, 1, SHA, [b"input"], limits, replicas)[0]


def result(output: bytes, cpu: float = 2.0) -> agreement.ResultIn:
    return agreement.ResultIn("ok", 0, output, cpu, cpu, "")


def record(
    conn: Connection, results: list[tuple[str, int, agreement.ResultIn]], now: float
) -> list[agreement.Recorded | MarketError]:
    """(host, lease, result)s recorded as the market records posted results
    (agreement.record_many_checked), their answers read at once; the refusals it tells at
    once checked to be the answers' own."""
    later, refusals = agreement.record_many_checked(conn, results, now)
    answers = later.value()
    assert refusals == [a if isinstance(a, MarketError) else None for a in answers]
    return answers


def paid(conn: Connection) -> dict[str, int]:
    """Millicoins paid for results, per seller account."""
    rows = conn.execute(
        "SELECT substr(target, 3), sum(millicoins) FROM transfers WHERE kind = 'pay' "
        "GROUP BY target"
    ).fetchall()
    names = dict(conn.execute("SELECT id, name FROM accounts").fetchall())
    return {names[int(key)]: total for key, total in rows}


def writer_turns(url: str, *, granted: bool) -> int:
    """Writers' turns (pgstore.writer_turn) held (`granted`) or waited for on this database
    now (not on another database of the same server, where another test run may hold its
    own)."""
    key = pgstore.WRITER_LOCK
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted = %s "
            "AND classid = %s AND objid = %s "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            (granted, key >> 32, key & 0xFFFFFFFF),
        ).fetchone()
    return int(row[0]) if row else 0
