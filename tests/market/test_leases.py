"""Leases, replication, trust and payment, on a real database of each engine (no HTTP)."""

from __future__ import annotations

import hashlib

import pytest

from cpushare.limits import JobLimits
from market import agreement, jobs, leasing, ledger, trust
from market.dialect import Connection
from market.errors import Conflict, Forbidden, Gone, MarketError
from tests.market.helpers import LIMITS, SHA, host, job, paid, result


def test_replication_rejects_the_liar_and_pays_only_the_honest(conn: Connection) -> None:
    done = job(conn, replicas=2)
    honest1 = host(conn, "alice", "10.0.0.1")
    liar = host(conn, "mallory", "10.0.0.2")
    honest2 = host(conn, "bob", "10.0.0.3")
    first = leasing.grant_lease(conn, honest1, 0, LIMITS, 30, 0)
    lie = leasing.grant_lease(conn, liar, 0, LIMITS, 30, 0)
    assert first is not None and lie is not None
    assert leasing.grant_lease(conn, honest2, 0, LIMITS, 30, 0) is None  # both slots taken
    agreement.record_result(conn, first.id, honest1.id, result(b"right", 2.0), 1)
    agreement.record_result(conn, lie.id, liar.id, result(b"wrong", 50.0), 1)
    # Disagreement frees a slot for a third, distinct host.
    third = leasing.grant_lease(conn, honest2, 0, LIMITS, 30, 2)
    assert third is not None and third.job_id == done
    reply = agreement.record_result(conn, third.id, honest2.id, result(b"right", 3.0), 3)
    assert reply.verdict == "accepted"
    verdicts = dict(conn.execute("SELECT host_id, verdict FROM results").fetchall())
    assert verdicts == {honest1.id: "accepted", liar.id: "rejected", honest2.id: "accepted"}
    assert paid(conn) == {"alice": 2000, "bob": 2000}  # both earn the smaller claim
    state, sha = conn.execute("SELECT state, output_sha256 FROM jobs").fetchone()
    assert (state, sha) == ("done", hashlib.sha256(b"right").hexdigest())
    assert trust.valid_results(conn, honest1.id, SHA) == 1
    assert trust.valid_results(conn, liar.id, SHA) == 0
    assert ledger.check(conn) == []


def test_a_result_is_paid_once(conn: Connection) -> None:
    job(conn, replicas=1)
    seller = host(conn, "alice", "10.0.0.1")
    lease = leasing.grant_lease(conn, seller, 0, LIMITS, 30, 0)
    assert lease is not None
    first = agreement.record_result(conn, lease.id, seller.id, result(b"x"), 1)
    again = agreement.record_result(conn, lease.id, seller.id, result(b"x"), 2)
    assert again.duplicate is True and again.millicoins == first.millicoins == 2000
    assert conn.execute("SELECT count(*) FROM transfers WHERE kind = 'pay'").fetchone()[0] == 1
    assert ledger.check(conn) == []


def test_a_buyer_selling_to_itself_is_paid_and_refunded_in_one_balance(
    conn: Connection,
) -> None:
    job(conn, replicas=1)
    seller = host(conn, "lab", "10.0.0.1")  # the buyer's own machine
    before = ledger.balance(conn, 1)
    lease = leasing.grant_lease(conn, seller, 0, LIMITS, 30, 0)
    assert lease is not None
    recorded = agreement.record_result(conn, lease.id, seller.id, result(b"x"), 1)
    assert recorded.verdict == "accepted" and recorded.millicoins == 2000
    # Both the payment and the refund came back to the one account: the whole reservation.
    assert ledger.balance(conn, 1) - before == 60 * 1000 * 3
    assert ledger.check(conn) == []


def test_an_expired_lease_requeues_its_job_for_anyone(conn: Connection) -> None:
    queued = job(conn, replicas=1)
    first, second = host(conn, "alice", "10.0.0.1"), host(conn, "bob", "10.0.0.2")
    lease = leasing.grant_lease(conn, first, 0, LIMITS, 10, 0)
    assert lease is not None
    assert leasing.grant_lease(conn, second, 0, LIMITS, 10, 5) is None
    assert leasing.expire_leases(conn, 11) == 1
    with pytest.raises(Gone):
        agreement.record_result(conn, lease.id, first.id, result(b"late"), 12)
    again = leasing.grant_lease(conn, second, 0, LIMITS, 10, 12)
    assert again is not None and again.job_id == queued


def test_extending_keeps_a_lease_alive_up_to_the_wall_clock_limit(
    conn: Connection,
) -> None:
    job(conn, replicas=1, cpu_seconds=10)  # a wall-clock limit of 20 s
    seller = host(conn, "alice", "10.0.0.1")
    lease = leasing.grant_lease(conn, seller, 0, LIMITS, 10, 0)
    assert lease is not None
    assert leasing.extend_lease(conn, lease.id, seller.id, 10, 8) == 18
    assert leasing.expire_leases(conn, 15) == 0
    # 20 s of wall clock plus the grace, and no more.
    limit = 20 + leasing.WALL_GRACE_SECONDS
    for now in range(16, int(limit) - 1, 8):
        assert leasing.extend_lease(conn, lease.id, seller.id, 10, now) == min(now + 10, limit)
    assert leasing.extend_lease(conn, lease.id, seller.id, 10, limit - 1) == limit
    with pytest.raises(Conflict, match="wall-clock limit"):
        leasing.extend_lease(conn, lease.id, seller.id, 10, limit)


def test_one_host_cannot_touch_another_hosts_lease(conn: Connection) -> None:
    job(conn, replicas=1)
    owner, other = host(conn, "alice", "10.0.0.1"), host(conn, "mallory", "10.0.0.2")
    lease = leasing.grant_lease(conn, owner, 0, LIMITS, 10, 0)
    assert lease is not None
    with pytest.raises(Forbidden, match="belongs to another host"):
        agreement.record_result(conn, lease.id, other.id, result(b"x"), 1)
    with pytest.raises(Forbidden):
        leasing.extend_lease(conn, lease.id, other.id, 10, 1)
    with pytest.raises(Forbidden):
        leasing.release_lease(conn, lease.id, other.id, 1)


def test_jobs_beyond_the_sellers_limits_are_not_leased(conn: Connection) -> None:
    job(conn)
    seller = host(conn, "alice", "10.0.0.1")
    assert leasing.grant_lease(conn, seller, 0, (16 << 20, 60), 10, 0) is None
    assert leasing.grant_lease(conn, seller, 0, (256 << 20, 10), 10, 0) is None


def test_a_seat_holds_one_lease_and_seats_are_bounded(conn: Connection) -> None:
    for _ in range(3):
        job(conn, replicas=1)
    seller = host(conn, "alice", "10.0.0.1", seats=2)
    first = leasing.grant_lease(conn, seller, 0, LIMITS, 10, 0)
    second = leasing.grant_lease(conn, seller, 0, LIMITS, 10, 1)
    assert first is not None and second is not None
    # Asking again on seat 0 handed the first lease back (and its job was free again).
    assert second.job_id == first.job_id and second.id != first.id
    state = conn.execute("SELECT state FROM leases WHERE id = ?", (first.id,)).fetchone()[0]
    assert state == "expired"
    assert leasing.grant_lease(conn, seller, 1, LIMITS, 10, 1) is not None
    with pytest.raises(MarketError, match="seat must be from 0 to 1"):
        leasing.grant_lease(conn, seller, 2, LIMITS, 10, 1)
    active = conn.execute("SELECT count(*) FROM leases WHERE state = 'active'").fetchone()[0]
    assert active == 2


def test_a_job_without_agreement_fails_after_its_last_result_and_is_refunded(
    conn: Connection,
) -> None:
    job(conn, replicas=2)
    balance = ledger.balance(conn, 1)
    for i in range(6):
        seller = host(conn, "alice", f"10.0.0.{i + 1}")
        lease = leasing.grant_lease(conn, seller, 0, LIMITS, 10, i)
        if lease is None:
            break
        agreement.record_result(conn, lease.id, seller.id, result(f"answer {i}".encode()), i)
    assert conn.execute("SELECT state FROM jobs").fetchone()[0] == "failed"
    assert paid(conn) == {}
    assert ledger.balance(conn, 1) == balance + 60 * 1000 * 5
    assert ledger.check(conn) == []


def test_a_trusted_host_stands_alone_and_is_paid_at_most_the_median(
    conn: Connection,
) -> None:
    a, b = host(conn, "alice", "10.0.0.1"), host(conn, "bob", "10.0.0.2")
    for i in range(trust.TRUSTED):
        job(conn)
        for seller in (a, b):
            lease = leasing.grant_lease(conn, seller, 0, LIMITS, 10, i)
            assert lease is not None
            agreement.record_result(conn, lease.id, seller.id, result(b"ok", 2.0 + i % 2), i)
    assert trust.valid_results(conn, a.id, SHA) == trust.TRUSTED
    alone = job(conn)
    lease = leasing.grant_lease(conn, a, 0, LIMITS, 10, 20, chance=lambda: 0.99)
    assert lease is not None and lease.job_id == alone
    # A solo lease takes the job's every slot: no one else is asked.
    assert leasing.grant_lease(conn, b, 0, LIMITS, 10, 20) is None
    reply = agreement.record_result(conn, lease.id, a.id, result(b"ok", 55.0), 21)
    assert reply.verdict == "accepted"
    assert reply.millicoins == 2000  # the median of the validated claims, not 55 s
    # The 1/n spot check: replicated anyway.
    checked = job(conn)
    spot = leasing.grant_lease(conn, a, 0, LIMITS, 10, 30, chance=lambda: 0.01)
    assert spot is not None and spot.job_id == checked
    assert leasing.grant_lease(conn, b, 0, LIMITS, 10, 30) is not None
    assert ledger.check(conn) == []


def test_cancelling_returns_the_whole_reservation(conn: Connection) -> None:
    before = ledger.balance(conn, 1)
    cancelled = job(conn)
    seller = host(conn, "alice", "10.0.0.1")
    lease = leasing.grant_lease(conn, seller, 0, LIMITS, 10, 0)
    assert lease is not None
    assert ledger.balance(conn, 1) < before
    agreement.cancel(conn, 1, cancelled, 1)
    assert ledger.balance(conn, 1) == before
    with pytest.raises(Gone):
        agreement.record_result(conn, lease.id, seller.id, result(b"x"), 2)
    with pytest.raises(Conflict):
        agreement.cancel(conn, 1, cancelled, 3)
    assert ledger.check(conn) == []


def test_a_buyer_without_coins_cannot_submit(conn: Connection) -> None:
    with pytest.raises(ledger.PaymentRequired, match=r"holds 0\.000"):
        jobs.submit_jobs(conn, 2, SHA, [b"x"], JobLimits(), None)
    assert conn.execute("SELECT count(*) FROM jobs").fetchone()[0] == 0
