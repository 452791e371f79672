"""A batch of results (agreement.record_many_checked, as the market records a post) ends
exactly as the same results recorded one by one: the same answers, and the same rows in
every table the results touch, ids included, whichever of them are accepted alone (written
together), judged against replicas, posted twice or refused."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

from market import agreement, leasing
from market.dialect import Connection, Location
from market.errors import MarketError
from market.store import open_database
from tests.market.helpers import LIMITS, host, job, market_db, record, result

TABLES = ("results", "transfers", "accounts", "jobs", "leases", "trust")


def _market(path: Path) -> tuple[Connection, list[tuple[int, agreement.ResultIn]], str]:
    """A market where bob holds leases on two jobs that want two results (his result for
    the first is in), and alice a lease on each job; what alice posts, and her host."""
    conn = market_db(open_database(path))
    replicated = [job(conn, replicas=2), job(conn, replicas=2)]
    alone = [job(conn, replicas=1) for _ in range(4)]
    alice = host(conn, "alice", "10.0.0.1", seats=8)
    bob = host(conn, "bob", "10.0.0.2", seats=2)
    bobs = leasing.grant_leases(conn, bob, [0, 1], LIMITS, 30, 0)
    assert [lease.job_id for lease in bobs] == replicated
    agreement.record_result(conn, bobs[0].id, bob.id, result(b"right", 3.0), 1)
    leases = leasing.grant_leases(conn, alice, list(range(6)), LIMITS, 30, 2)
    assert [lease.job_id for lease in leases] == replicated + alone
    first, second, *rest = (lease.id for lease in leases)
    posted = [
        (rest[0], result(b"alone", 9.0)),  # accepted alone: paid its claim, no median yet
        (rest[1], result(b"alone too", 4.0)),
        (first, result(b"right", 2.0)),  # agrees with bob: accepted, the median moves
        (rest[2], result(b"after", 50.0)),  # read again: paid at most the median now
        (second, result(b"first of two")),  # pending: its job wants a second network
        (rest[0], result(b"alone", 9.0)),  # posted again: the same answer, a duplicate
        (10**9, result(b"nowhere")),  # no such lease
        # Accepted alone with no exit status (a NULL in the multi-row UPDATE of the jobs).
        (rest[3], agreement.ResultIn("crashed", None, b"", 1.0, 1.0, "signal 11")),
    ]
    return conn, posted, alice.id


def _answer(outcome: agreement.Recorded | MarketError) -> object:
    return (type(outcome).__name__, str(outcome)) if isinstance(outcome, MarketError) else outcome


def _tables(conn: Connection) -> dict[str, list[tuple[object, ...]]]:
    return {
        table: [tuple(row) for row in conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2")]
        for table in TABLES
    }


def test_a_batch_of_results_ends_as_the_results_one_by_one(tmp_path: Path) -> None:
    together, posted, alice = _market(tmp_path / "together.db")
    # A copy of the same market (its random ids too), where they are posted one by one.
    one_by_one = sqlite3.connect(tmp_path / "one_by_one.db", isolation_level=None)
    assert isinstance(together, sqlite3.Connection)
    together.backup(one_by_one)
    answers = record(together, [(alice, lease, res) for lease, res in posted], 5)
    expected: list[agreement.Recorded | MarketError] = []
    for lease_id, posted_result in posted:
        try:
            expected.append(agreement.record_result(one_by_one, lease_id, alice, posted_result, 5))
        except MarketError as exc:
            expected.append(exc)
    assert [_answer(a) for a in answers] == [_answer(e) for e in expected]
    verdicts = [getattr(a, "verdict", None) for a in answers]
    assert verdicts == ["accepted"] * 4 + ["pending", "accepted", None, "accepted"]
    paid = [getattr(a, "millicoins", None) for a in answers]
    # Alone before the median existed: its claim; after the agreement: the median (2 s).
    assert paid[0] == 9000 and paid[1] == 4000 and paid[3] == 2000
    assert _tables(together) == _tables(one_by_one)
    together.close()
    one_by_one.close()


def test_jobs_ended_together_keep_their_outcomes_with_their_types(
    market_location: Location,
) -> None:
    """The UPDATE that ends a batch's jobs joins them to their values: each job gets its own
    result's outcome, exit status (a NULL among numbers) and output sha256, with the
    columns' own types on either engine."""
    conn = market_db(open_database(market_location))
    ids = [job(conn, replicas=1) for _ in range(3)]
    alice = host(conn, "alice", "10.0.0.1", seats=3)
    leases = leasing.grant_leases(conn, alice, [0, 1, 2], LIMITS, 30, 0)
    assert [lease.job_id for lease in leases] == ids
    posted = [
        (leases[0].id, result(b"one")),
        (leases[1].id, agreement.ResultIn("crashed", None, b"", 1.0, 1.0, "signal 11")),
        (leases[2].id, agreement.ResultIn("ok", 3, b"three", 1.0, 1.0, "")),
    ]
    answers = record(conn, [(alice.id, lease, res) for lease, res in posted], 1)
    assert [a.verdict for a in answers if isinstance(a, agreement.Recorded)] == ["accepted"] * 3
    rows = conn.execute(
        "SELECT id, state, outcome, exit_status, output_sha256, slots, reserved FROM jobs "
        "WHERE id IN (?, ?, ?) ORDER BY id",
        ids,
    ).fetchall()
    assert [tuple(row) for row in rows] == [
        (ids[0], "done", "ok", 0, hashlib.sha256(b"one").hexdigest(), 0, 0),
        (ids[1], "done", "crashed", None, hashlib.sha256(b"").hexdigest(), 0, 0),
        (ids[2], "done", "ok", 3, hashlib.sha256(b"three").hexdigest(), 0, 0),
    ]
    conn.close()
