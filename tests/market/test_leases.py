"""Leases, replication and credits, on a real SQLite database (no HTTP)."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from cpushare.limits import JobLimits
from market import accounts, agreement, jobs, leasing, ledger
from market.errors import Forbidden, Gone
from market.store import open_database

LIMITS = (256 << 20, 60)


@pytest.fixture
def conn(tmp_path: Path) -> sqlite3.Connection:
    db = open_database(tmp_path / "m.db")
    for name in ("lab", "alice", "bob", "mallory"):
        accounts.create_account(db, name)
    return db


def _order(conn: sqlite3.Connection, account: str) -> str:
    return accounts.create_order(conn, account).order_id


def _job(conn: sqlite3.Connection, replicas: int = 1) -> int:
    program = b"\x7fELF program"
    sha = hashlib.sha256(program).hexdigest()
    jobs.store_program(conn, 1, program, sha)
    return jobs.submit_jobs(conn, 1, sha, [b"input"], JobLimits(), replicas)[0]


def _result(output: bytes, cpu: float = 2.0) -> agreement.ResultIn:
    return agreement.ResultIn("ok", 0, output, cpu, cpu, "")


def _coins(conn: sqlite3.Connection) -> dict[str, int]:
    rows = conn.execute(
        "SELECT a.name, sum(l.millicoins) FROM ledger l JOIN accounts a ON a.id = l.account_id "
        "GROUP BY a.name"
    ).fetchall()
    return dict(rows)


def test_replication_rejects_the_liar_and_credits_only_the_honest(conn: sqlite3.Connection) -> None:
    job = _job(conn, replicas=2)
    honest1, liar, honest2 = (_order(conn, n) for n in ("alice", "mallory", "bob"))
    first = leasing.grant_lease(conn, honest1, "s", LIMITS, 30, 0)
    lie = leasing.grant_lease(conn, liar, "s", LIMITS, 30, 0)
    assert first is not None and lie is not None
    assert leasing.grant_lease(conn, honest2, "s", LIMITS, 30, 0) is None  # both slots taken
    agreement.record_result(conn, first.id, honest1, _result(b"right", 2.0), 1)
    agreement.record_result(conn, lie.id, liar, _result(b"wrong", 50.0), 1)
    # Disagreement frees a slot for a third, distinct order.
    third = leasing.grant_lease(conn, honest2, "s", LIMITS, 30, 2)
    assert third is not None and third.job_id == job
    reply = agreement.record_result(conn, third.id, honest2, _result(b"right", 3.0), 3)
    assert reply.verdict == "accepted"
    verdicts = dict(conn.execute("SELECT order_id, verdict FROM results").fetchall())
    assert verdicts == {honest1: "accepted", liar: "rejected", honest2: "accepted"}
    assert _coins(conn) == {"alice": 2000, "bob": 2000}  # both earn the smaller claim
    state, sha = conn.execute("SELECT state, output_sha256 FROM jobs").fetchone()
    assert (state, sha) == ("done", hashlib.sha256(b"right").hexdigest())


def test_crediting_twice_credits_once(conn: sqlite3.Connection) -> None:
    _job(conn)
    order = _order(conn, "alice")
    lease = leasing.grant_lease(conn, order, "s", LIMITS, 30, 0)
    assert lease is not None
    agreement.record_result(conn, lease.id, order, _result(b"x"), 1)
    again = agreement.record_result(conn, lease.id, order, _result(b"x"), 2)
    ledger.credit(conn, 1)
    assert again.duplicate is True
    assert conn.execute("SELECT count(*) FROM ledger").fetchone()[0] == 1


def test_an_expired_lease_requeues_its_job_for_anyone(conn: sqlite3.Connection) -> None:
    job = _job(conn)
    first, second = _order(conn, "alice"), _order(conn, "bob")
    lease = leasing.grant_lease(conn, first, "s", LIMITS, 10, 0)
    assert lease is not None
    assert leasing.grant_lease(conn, second, "s", LIMITS, 10, 5) is None
    assert leasing.expire_leases(conn, 11) == 1
    with pytest.raises(Gone):
        agreement.record_result(conn, lease.id, first, _result(b"late"), 12)
    again = leasing.grant_lease(conn, second, "s", LIMITS, 10, 12)
    assert again is not None and again.job_id == job


def test_extending_keeps_a_lease_alive(conn: sqlite3.Connection) -> None:
    _job(conn)
    order = _order(conn, "alice")
    lease = leasing.grant_lease(conn, order, "s", LIMITS, 10, 0)
    assert lease is not None
    assert leasing.extend_lease(conn, lease.id, order, 10, 8) == 18
    assert leasing.expire_leases(conn, 15) == 0
    with pytest.raises(Gone):
        leasing.extend_lease(conn, lease.id, order, 10, 19)


def test_one_order_cannot_touch_another_orders_lease(conn: sqlite3.Connection) -> None:
    _job(conn)
    owner, other = _order(conn, "alice"), _order(conn, "mallory")
    lease = leasing.grant_lease(conn, owner, "s", LIMITS, 10, 0)
    assert lease is not None
    with pytest.raises(Forbidden, match="belongs to another order"):
        agreement.record_result(conn, lease.id, other, _result(b"x"), 1)
    with pytest.raises(Forbidden):
        leasing.extend_lease(conn, lease.id, other, 10, 1)


def test_jobs_beyond_the_sellers_limits_are_not_leased(conn: sqlite3.Connection) -> None:
    _job(conn)
    order = _order(conn, "alice")
    assert leasing.grant_lease(conn, order, "s", (16 << 20, 60), 10, 0) is None
    assert leasing.grant_lease(conn, order, "s", (256 << 20, 10), 10, 0) is None


def test_a_job_without_agreement_fails_after_its_last_result(conn: sqlite3.Connection) -> None:
    _job(conn, replicas=2)
    for i, name in enumerate(("lab", "alice", "bob", "mallory", "lab")):
        order = _order(conn, name)
        lease = leasing.grant_lease(conn, order, "s", LIMITS, 10, i)
        if lease is None:
            break
        agreement.record_result(conn, lease.id, order, _result(f"answer {i}".encode()), i)
    assert conn.execute("SELECT state FROM jobs").fetchone()[0] == "failed"
    assert conn.execute("SELECT count(*) FROM ledger").fetchone()[0] == 0
