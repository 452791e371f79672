"""A seat asking while it still holds a lease: on SQLite the seats' leases are looked for
only when storing the new ones finds one (leasing.grant_leases_later); the outcome is as if
the old lease had been handed back first, solo leases and slots included."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from market import leasing, trust
from market.dialect import Connection, Location
from market.store import open_database
from tests.market.helpers import LIMITS, SHA, host, job, market_db


@pytest.fixture
def conn(market_location: Location) -> Iterator[Connection]:
    db = market_db(open_database(market_location))
    yield db
    db.close()


def _slots(conn: Connection) -> list[tuple[int, int]]:
    return [tuple(row) for row in conn.execute("SELECT id, slots FROM jobs ORDER BY id")]


def _active(conn: Connection) -> list[tuple[int, int, int]]:
    return [
        tuple(row)
        for row in conn.execute(
            "SELECT seat, job_id, solo FROM leases WHERE state = 'active' ORDER BY seat"
        )
    ]


def test_a_held_seat_hands_its_lease_back_and_solo_slots_stay_right(conn: Connection) -> None:
    jobs = [job(conn) for _ in range(4)]  # adaptive: two slots each until trusted
    seller = host(conn, "alice", "10.0.0.1", seats=2)
    conn.execute(
        "INSERT INTO trust (host_id, program, valid) VALUES (?, ?, ?)",
        (seller.id, SHA, trust.TRUSTED),
    )
    always = lambda: 0.99  # noqa: E731 - a trusted host's lease is solo
    first = leasing.grant_leases(conn, seller, [0], LIMITS, 30, 1.0, always)
    assert [(lease.seat, lease.job_id) for lease in first] == [(0, jobs[0])]
    # Seat 0 asks again while it holds its lease: it is handed back (its job's slots
    # recomputed) and the jobs are leased oldest first, as if it had been handed back first.
    again = leasing.grant_leases(conn, seller, [0, 1], LIMITS, 30, 2.0, always)
    assert [(lease.seat, lease.job_id) for lease in again] == [(0, jobs[0]), (1, jobs[1])]
    assert _active(conn) == [(0, jobs[0], 1), (1, jobs[1], 1)]
    # Solo leases leave their jobs no slot; the jobs not taken keep both of theirs.
    assert _slots(conn) == [(jobs[0], 0), (jobs[1], 0), (jobs[2], 2), (jobs[3], 2)]
    handed_back = conn.execute(
        "SELECT count(*) FROM leases WHERE id = ? AND state = 'expired' AND released = 2.0",
        (first[0].id,),
    ).fetchone()[0]
    assert handed_back == 1


def test_a_seat_left_without_a_job_still_hands_its_lease_back(conn: Connection) -> None:
    only = job(conn, replicas=1)
    seller = host(conn, "alice", "10.0.0.1", seats=2)
    (held,) = leasing.grant_leases(conn, seller, [1], LIMITS, 30, 1.0)
    assert held.job_id == only
    # Seat 1 asks with seat 0: seat 1's lease goes back and its job to the first seat named.
    granted = leasing.grant_leases(conn, seller, [0, 1], LIMITS, 30, 2.0)
    assert [(lease.seat, lease.job_id) for lease in granted] == [(0, only)]
    assert _active(conn) == [(0, only, 0)]
    assert _slots(conn) == [(only, 0)]
