"""Results and the leases asked for beside them (market.posting) recorded by one
operation: the results first, then each host's leases, on the seats whose results were
kept; on each engine."""

from __future__ import annotations

from market import leasing, posting
from market.agreement import Recorded
from market.dialect import Connection
from market.errors import MarketError, TooLarge
from market.later import resolved
from tests.market.helpers import LIMITS, host, job, result


def _state(conn: Connection, lease_id: int) -> str:
    return str(conn.execute("SELECT state FROM leases WHERE id = ?", (lease_id,)).fetchone()[0])


def test_the_next_leases_follow_the_results_of_the_same_operation(conn: Connection) -> None:
    first = [job(conn, replicas=1) for _ in range(4)]
    alice = host(conn, "alice", "10.0.0.1", seats=3)
    bob = host(conn, "bob", "10.0.0.2", seats=1)
    kept, too_large, malformed = leasing.grant_leases(conn, alice, [0, 1, 2], LIMITS, 30, 0)
    (bobs,) = leasing.grant_leases(conn, bob, [0], LIMITS, 30, 0)
    assert sorted(lease.job_id for lease in (kept, too_large, malformed, bobs)) == first
    following = [job(conn, replicas=1) for _ in range(3)]
    ask = posting.NextLeases(
        alice, [0, 1, 2], LIMITS, posted=[kept.id, too_large.id], refused=[malformed.id]
    )
    items: list[posting.Item] = [
        (alice.id, kept.id, result(b"out")),
        (alice.id, too_large.id, result(b"x" * ((1 << 20) + 1))),  # refused while recording
        ask,
        (bob.id, bobs.id, result(b"bob's")),  # another host's, after alice's ask
    ]
    answers = resolved(posting.record_and_lease(conn, items, 1, 30))
    assert isinstance(answers, list) and len(answers) == 4
    recorded, refused, granted, bobs_recorded = answers
    assert isinstance(recorded, Recorded) and recorded.verdict == "accepted"
    assert isinstance(refused, TooLarge)
    assert isinstance(bobs_recorded, Recorded) and bobs_recorded.verdict == "accepted"
    # Only seat 0's result was kept: seats 1 and 2 keep their leases, whose results may
    # still be posted; seat 0 gets the oldest job left.
    assert isinstance(granted, list)
    assert [(lease.seat, lease.job_id) for lease in granted] == [(0, following[0])]
    assert [_state(conn, lease.id) for lease in (kept, too_large, malformed, bobs)] == [
        "done",
        "active",
        "active",
        "done",
    ]


def test_leases_asked_for_without_results_are_granted(conn: Connection) -> None:
    jobs = [job(conn, replicas=1) for _ in range(2)]
    alice = host(conn, "alice", "10.0.0.1", seats=2)
    ask = posting.NextLeases(alice, [1, 0], LIMITS, posted=[], refused=[])
    (granted,) = resolved(posting.record_and_lease(conn, [ask], 0, 30))
    assert [(lease.seat, lease.job_id) for lease in granted] == list(zip([1, 0], jobs, strict=True))


def test_an_ask_refused_on_its_own_leaves_the_rest_of_the_operation(conn: Connection) -> None:
    jobs = [job(conn, replicas=1) for _ in range(3)]
    alice = host(conn, "alice", "10.0.0.1", seats=1)
    bob = host(conn, "bob", "10.0.0.2", seats=2)
    (held,) = leasing.grant_leases(conn, bob, [0], LIMITS, 30, 0)
    items: list[posting.Item] = [
        posting.NextLeases(alice, [0], LIMITS, posted=[], refused=[]),
        posting.NextLeases(alice, [1], LIMITS, posted=[], refused=[]),  # alice has one seat
        (bob.id, held.id, result(b"bob's")),
        posting.NextLeases(bob, [1], LIMITS, posted=[], refused=[]),
    ]
    answers = resolved(posting.record_and_lease(conn, items, 1, 30))
    assert isinstance(answers, list)
    granted, refused, recorded, bobs = answers
    assert isinstance(refused, MarketError) and "seat 1 is not one of this host's" in str(refused)
    assert isinstance(recorded, Recorded) and recorded.verdict == "accepted"
    assert isinstance(granted, list) and isinstance(bobs, list)
    assert [(lease.seat, lease.job_id) for lease in granted + bobs] == [(0, jobs[1]), (1, jobs[2])]
