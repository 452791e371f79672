"""The rules the hot tables' constraints kept, now checked by market.integrity on
PostgreSQL (where schema step 6 dropped those constraints): a market's real work keeps
them, and a row that breaks one is reported."""

from __future__ import annotations

import sqlite3

import pytest

from market import agreement, integrity, leasing, ledger
from market.dialect import INTEGRITY_ERRORS, Connection, is_postgres
from market.schema import POSTGRES_ONLY
from tests.market.helpers import LIMITS, host, job, paid, result

# What step 6 drops: on both engines, three indexes no query needs ...
DROPPED_INDEXES = {"leases_job", "leases_host", "transfers_source"}
# ... and on PostgreSQL the hot tables' references and state checks.
DROPPED_CONSTRAINTS = {
    "leases_job_id_fkey",
    "leases_order_id_fkey",
    "leases_host_id_fkey",
    "leases_state_check",
    "results_lease_id_fkey",
    "results_job_id_fkey",
    "results_order_id_fkey",
    "results_host_id_fkey",
    "results_verdict_check",
    "transfers_result_id_fkey",
    "transfers_kind_check",
    "jobs_state_check",
}


def _work(conn: Connection) -> None:
    """Jobs leased and answered every way: alone, agreed, disagreeing, expired."""
    alice, bob = host(conn, "alice", "10.0.0.1"), host(conn, "bob", "10.0.0.2")
    job(conn, replicas=1)
    pair = job(conn, replicas=2)
    first = leasing.grant_lease(conn, alice, 0, LIMITS, 60, 0)
    assert first is not None
    agreement.record_result(conn, first.id, alice.id, result(b"one"), 1)
    for seller, output in ((alice, b"two"), (bob, b"two")):
        lease = leasing.grant_lease(conn, seller, 0, LIMITS, 60, 2)
        assert lease is not None and lease.job_id == pair
        agreement.record_result(conn, lease.id, seller.id, result(output), 3)
    job(conn, replicas=1)
    assert leasing.grant_lease(conn, alice, 0, LIMITS, 1, 4) is not None
    assert leasing.expire_leases(conn, 10) == 1


def test_a_markets_work_keeps_the_rules(conn: Connection) -> None:
    _work(conn)
    assert conn.execute("SELECT count(*) FROM transfers WHERE kind = 'pay'").fetchone()[0] == 3
    assert integrity.check(conn) == []
    assert ledger.check(conn) == []


def _unchecked(conn: Connection) -> None:
    """Let SQLite take rows its own constraints would refuse, as PostgreSQL now does."""
    if isinstance(conn, sqlite3.Connection):
        conn.execute("PRAGMA foreign_keys = OFF")
        conn.execute("PRAGMA ignore_check_constraints = ON")


def test_a_lease_of_no_job_is_reported(conn: Connection) -> None:
    _work(conn)
    _unchecked(conn)
    conn.execute("UPDATE leases SET job_id = 999999 WHERE id = (SELECT min(id) FROM leases)")
    problems = integrity.check(conn)
    assert len(problems) == 1
    assert "names jobs 999999 in job_id, which does not exist" in problems[0]


def test_a_payment_for_no_result_and_an_unknown_state_are_reported(conn: Connection) -> None:
    _work(conn)
    _unchecked(conn)
    conn.execute("UPDATE transfers SET result_id = result_id + 999000 WHERE kind = 'pay'")
    conn.execute("UPDATE jobs SET state = 'lost' WHERE id = (SELECT min(id) FROM jobs)")
    problems = integrity.check(conn)
    assert sum("names results 9990" in p and "in result_id" in p for p in problems) == 3
    assert sum("has state 'lost', not one of open, done, failed" in p for p in problems) == 1
    assert len(problems) == 4


def test_a_finished_job_with_slots_is_reported(conn: Connection) -> None:
    _work(conn)
    conn.execute("UPDATE jobs SET slots = 1 WHERE state = 'done'")
    problems = integrity.check(conn)
    assert len(problems) == 2
    assert all(p.endswith("is done but has slots to lease") for p in problems)


def _ready_index(conn: Connection) -> str:
    if is_postgres(conn):
        row = conn.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'jobs_ready'")
    else:
        row = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'jobs_ready'")
    return str(row.fetchone()[0])


def test_step_6_drops_the_unused_indexes_and_on_postgresql_the_hot_constraints(
    conn: Connection,
) -> None:
    if is_postgres(conn):
        indexes = {row[0] for row in conn.execute("SELECT indexname FROM pg_indexes")}
        constraints = {row[0] for row in conn.execute("SELECT conname FROM pg_constraint")}
        assert not constraints & DROPPED_CONSTRAINTS
        assert "transfers_millicoins_check" in constraints  # the ledger's own rule stays
        # A lease naming no job is stored now; only the integrity check finds it.
        conn.execute(
            "INSERT INTO leases (job_id, order_id, seller, state, created, deadline) "
            "VALUES (999999, 'none', 'x', 'active', 0, 1)"
        )
        assert len(integrity.check(conn)) == 2
    else:
        indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute(
                "INSERT INTO leases (job_id, order_id, seller, state, created, deadline) "
                "VALUES (999999, 'none', 'x', 'active', 0, 1)"
            )
    assert not indexes & DROPPED_INDEXES
    # The ready jobs' index names only slots in its condition: ending a job (its state
    # changes, its slots stay 0) touches no indexed column.
    assert _ready_index(conn).replace("(", "").replace(")", "").endswith("WHERE slots > 0")
    assert "leases_network" in indexes and "transfers_target" in indexes
    assert set(POSTGRES_ONLY) == {5, 6}


def _index(conn: Connection, name: str) -> str:
    if is_postgres(conn):
        row = conn.execute("SELECT indexdef FROM pg_indexes WHERE indexname = ?", (name,))
    else:
        row = conn.execute("SELECT sql FROM sqlite_master WHERE name = ?", (name,))
    found = row.fetchone()
    text = "" if found is None else str(found[0]).replace("::text", "")
    return " ".join(text.replace("(", "").replace(")", "").split())


def test_step_7_indexes_only_the_rows_looked_up_and_a_result_is_still_paid_once(
    conn: Connection,
) -> None:
    # A refund (and a reservation, a grant) is not in the index of what accounts earned,
    # nor a job submitted through the API in the index of a batch's jobs.
    assert _index(conn, "transfers_target").endswith("WHERE kind = 'pay'")
    assert _index(conn, "jobs_batch").endswith("WHERE batch_id IS NOT NULL")
    if is_postgres(conn):
        constraints = {row[0] for row in conn.execute("SELECT conname FROM pg_constraint")}
        assert "transfers_result_id_key" not in constraints
        assert _index(conn, "transfers_result").endswith("WHERE result_id IS NOT NULL")
    # Whichever index holds it, a result is paid at most once ...
    seller = host(conn, "alice", "10.0.0.1")
    job(conn, replicas=1)
    lease = leasing.grant_lease(conn, seller, 0, LIMITS, 60, 1.0)
    assert lease is not None
    recorded = agreement.record_result(conn, lease.id, seller.id, result(b"out"), 1.0)
    assert recorded.verdict == "accepted"
    assert paid(conn) == {"alice": recorded.millicoins}
    with pytest.raises(INTEGRITY_ERRORS):
        conn.execute(
            "INSERT INTO transfers (kind, source, target, millicoins, result_id, created) "
            "VALUES ('pay', 'mint', 'a:1', 1, ?, 1)",
            (recorded.result_id,),
        )
    # ... while transfers naming no result are as many as the ledger makes.
    ledger.grant(conn, 1, 5, 2.0)
    ledger.grant(conn, 1, 5, 3.0)
    assert ledger.check(conn) == []
