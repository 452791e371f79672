"""How many SQL statements a result costs, on each engine: each one is a round trip and a
parse on PostgreSQL, so a count that grows back shows here, not only in the benchmark."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

import pytest

from market import agreement, grants, leasing
from market.dialect import Connection
from market.errors import MarketError, NotFound
from market.hosts import Host
from tests.market.helpers import LIMITS, host, job, record, result

# A result that ends its job alone (replicas=1): the lease, job row and program's median
# read at once (on SQLite the median on its own: a statement per program of the batch),
# the lease marked done, the result stored already accepted (it is the job's only one:
# nothing more to read or judge), both transfers, both balances, the job row.
ALONE = {"sqlite": 7, "postgres": 6}
# The first result of a job that wants two: read, lease, result, tally, slots.
WAITING = 5
# The second, agreeing result: as ALONE, reading the pending results, the verdicts, plus
# one trust row per host.
AGREED = 10
# A lease, for one seat or several: the jobs taken and the leases stored (on SQLite the
# seats' previous leases are looked for only when the INSERT finds one, or a seat is left
# without a job); on PostgreSQL, with the hand-back, all in one statement.
LEASE = {"sqlite": 2, "postgres": 1}
# What a seat asking while it holds a lease adds: on SQLite the seats' leases handed back
# and the first jobs' slots given back; the handed-back job's slots recomputed (its row, a
# tally and an update), the jobs taken again and the leases stored (PostgreSQL's
# statement only handed back).
HANDED_BACK = {"sqlite": 7, "postgres": 5}
# The asks of one operation granted together, however many: on PostgreSQL the jobs read
# (with their networks, the trust rows and the seats held), their slots, the leases; on
# SQLite each ask's own.
ASKS = {"sqlite": lambda asks: LEASE["sqlite"] * asks, "postgres": lambda asks: 3}


def engine(conn: Connection) -> str:
    return "sqlite" if isinstance(conn, sqlite3.Connection) else "postgres"


def statements(conn: Connection, step: Callable[[], object]) -> list[str]:
    """The statements `step` runs on `conn` (each row of an executemany counts)."""
    seen: list[str] = []
    if isinstance(conn, sqlite3.Connection):
        conn.set_trace_callback(seen.append)
        try:
            step()
        finally:
            conn.set_trace_callback(None)
        return seen
    execute, executemany = conn.execute, conn.executemany

    def counted(sql: str, parameters: Any = ()) -> Any:
        seen.append(sql)
        return execute(sql, parameters)

    def counted_many(sql: str, rows: Any) -> Any:
        rows = list(rows)
        seen.extend([sql] * len(rows))
        return executemany(sql, rows)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(conn, "execute", counted)
        patch.setattr(conn, "executemany", counted_many)
        step()
    return seen


def post(conn: Connection, lease: leasing.Lease | None, seller: Host) -> tuple[str, int]:
    """Post a result for the lease: (its verdict, the statements that took)."""
    assert lease is not None
    recorded: list[agreement.Recorded] = []
    ran = statements(
        conn,
        lambda: recorded.append(
            agreement.record_result(conn, lease.id, seller.id, result(b"x"), 1)
        ),
    )
    return recorded[0].verdict, len(ran)


def test_a_lease_runs_few_statements_however_many_seats(conn: Connection) -> None:
    for _ in range(6):
        job(conn, replicas=1)
    seller = host(conn, "alice", "10.0.0.1", seats=4)
    granted: list[leasing.Lease | None] = []
    ran = statements(
        conn, lambda: granted.append(leasing.grant_lease(conn, seller, 0, LIMITS, 30, 0))
    )
    assert granted[0] is not None and len(ran) == LEASE[engine(conn)]
    batch: list[list[leasing.Lease]] = []
    ran = statements(
        conn, lambda: batch.append(leasing.grant_leases(conn, seller, [0, 1, 2, 3], LIMITS, 30, 1))
    )
    # Seat 0's first lease was handed back: its job is leased again, to seat 0, oldest first.
    assert [lease.seat for lease in batch[0]] == [0, 1, 2, 3]
    assert batch[0][0].job_id == granted[0].job_id
    assert len({lease.job_id for lease in batch[0]}) == 4
    # Rare (a seat asks while it holds a lease).
    assert len(ran) == LEASE[engine(conn)] + HANDED_BACK[engine(conn)]
    slots = conn.execute("SELECT id, slots FROM jobs ORDER BY id").fetchall()
    assert [tuple(row) for row in slots] == [(1, 0), (2, 0), (3, 0), (4, 0), (5, 1), (6, 1)]
    active = conn.execute("SELECT count(*) FROM leases WHERE state = 'active'").fetchone()
    assert active[0] == 4


@pytest.mark.parametrize("count", [2, 12])
def test_the_asks_of_an_operation_run_few_statements_however_many(
    conn: Connection, count: int
) -> None:
    for _ in range(4 * count):
        job(conn, replicas=1)
    sellers = [host(conn, "alice", f"10.0.0.{n}", seats=4) for n in range(count)]
    asks = [grants.Ask(seller, [3, 1], LIMITS) for seller in sellers]
    granted: list[list[leasing.Lease]] = []
    ran = statements(
        conn,
        lambda: granted.extend(lease.value() for lease in grants.grant_many(conn, asks, 30, 0)),
    )
    assert [len(leases) for leases in granted] == [2] * count
    assert len({lease.job_id for leases in granted for lease in leases}) == 2 * count
    assert len(ran) == ASKS[engine(conn)](count)


def test_a_result_that_ends_its_job_alone_runs_few_statements(conn: Connection) -> None:
    job(conn, replicas=1)
    seller = host(conn, "alice", "10.0.0.1")
    lease = leasing.grant_lease(conn, seller, 0, LIMITS, 30, 0)
    assert post(conn, lease, seller) == ("accepted", ALONE[engine(conn)])


def test_a_replicated_job_runs_few_statements_per_result(conn: Connection) -> None:
    job(conn, replicas=2)
    first, second = host(conn, "alice", "10.0.0.1"), host(conn, "bob", "10.0.0.2")
    leases = [leasing.grant_lease(conn, seller, 0, LIMITS, 30, 0) for seller in (first, second)]
    assert post(conn, leases[0], first) == ("pending", WAITING)
    assert post(conn, leases[1], second) == ("accepted", AGREED)


def test_a_batch_of_results_reads_its_leases_at_once(conn: Connection) -> None:
    for _ in range(4):
        job(conn, replicas=1)
    seller = host(conn, "alice", "10.0.0.1", seats=4)
    leases = leasing.grant_leases(conn, seller, [0, 1, 2, 3], LIMITS, 30, 0)
    posted = [(lease.id, result(b"x")) for lease in leases]
    # The first lease again (its job ended with it: read again, a duplicate), and no lease.
    posted += [(leases[0].id, result(b"x")), (10**9, result(b"x"))]
    recorded: list[list[agreement.Recorded | MarketError]] = []
    ran = statements(
        conn, lambda: recorded.append(record(conn, [(seller.id, *p) for p in posted], 1))
    )
    answers = recorded[0]
    assert [getattr(a, "verdict", None) for a in answers[:4]] == ["accepted"] * 4
    first, again, missing = answers[0], answers[4], answers[5]
    assert isinstance(first, agreement.Recorded) and isinstance(again, agreement.Recorded)
    assert again.duplicate and again.result_id == first.result_id
    assert again.millicoins == first.millicoins > 0
    assert isinstance(missing, NotFound)
    # One read of the five leases; the four results accepted alone as one result is, their
    # statements multi-row, without its read; the duplicate's read again, its result and
    # what it was paid; nothing more for the missing lease.
    assert len(ran) == 1 + (ALONE[engine(conn)] - 1) + 2 + 1
