"""Leasing as the writer runs it: on PostgreSQL one statement a lease request, read once
the writer's batch is answered (market.leasing._lease_postgres), on SQLite a few. The
adaptive-replication rule decided per job taken, and seats asked for again within one
batch, on both engines."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from market import integrity, leasing, trust
from market.dialect import Connection, Location
from market.hosts import Host
from market.slots import refresh_slots
from market.store import Store
from tests.conftest import RunCoroutine
from tests.market.helpers import LIMITS, SHA, host, job


def _trust(conn: Connection, seller: Host, valid: int) -> None:
    conn.execute(
        "INSERT INTO trust (host_id, program, valid) VALUES (?, ?, ?)", (seller.id, SHA, valid)
    )


def _drawn(chances: list[float]) -> Callable[[], float]:
    left = iter(chances)
    return lambda: next(left)


def test_each_job_of_a_batch_gets_its_own_chance_of_standing_alone(conn: Connection) -> None:
    adaptive = [job(conn) for _ in range(3)]
    fixed = job(conn, replicas=2)
    seller = host(conn, "alice", "10.0.0.1", seats=4)
    _trust(conn, seller, 20)
    # Oldest job first, one chance each in turn: 1/20 or more stands alone.
    leases = leasing.grant_leases(
        conn, seller, [3, 1, 0, 2], LIMITS, 30, 0, _drawn([0.99, 0.01, 0.5, 0.99])
    )
    assert [(lease.job_id, lease.seat) for lease in leases] == [
        (adaptive[0], 3),
        (adaptive[1], 1),
        (adaptive[2], 0),
        (fixed, 2),
    ]
    rows = conn.execute("SELECT job_id, solo FROM leases ORDER BY job_id").fetchall()
    assert [tuple(row) for row in rows] == [
        (adaptive[0], 1),
        (adaptive[1], 0),
        (adaptive[2], 1),
        (fixed, 0),  # a fixed job never stands alone, whatever its chance
    ]
    # A solo lease takes its job's every slot; the others leave the second replica's.
    slots = dict(conn.execute("SELECT id, slots FROM jobs").fetchall())
    assert [slots[j] for j in (*adaptive, fixed)] == [0, 1, 0, 1]


def test_a_host_short_of_trust_never_stands_alone(conn: Connection) -> None:
    job(conn)
    seller = host(conn, "alice", "10.0.0.1")
    _trust(conn, seller, trust.TRUSTED - 1)
    lease = leasing.grant_lease(conn, seller, 0, LIMITS, 30, 0, chance=lambda: 0.999)
    assert lease is not None
    assert conn.execute("SELECT solo FROM leases").fetchone()[0] == 0
    assert conn.execute("SELECT slots FROM jobs").fetchone()[0] == 1


def _consistent_slots(conn: Connection) -> None:
    """Every job's slots as market.slots would compute them now."""
    stored = dict(conn.execute("SELECT id, slots FROM jobs").fetchall())
    for job_id, slots in stored.items():
        assert refresh_slots(conn, job_id) == slots, f"job {job_id}"


def test_seats_asked_for_again_in_one_batch_keep_one_lease_each(
    market_location: Location, conn: Connection, run_coroutine: RunCoroutine
) -> None:
    for _ in range(6):
        job(conn, replicas=1)
    seller = host(conn, "alice", "10.0.0.1", seats=2)
    store = Store(market_location)

    async def ask() -> list[list[leasing.Lease]]:
        # Written together: the writer takes them as one batch when it can, and each
        # request that finds its seat leased hands that lease back first.
        return await asyncio.gather(
            *(
                store.write(
                    lambda c, seats=seats, now=now: leasing.grant_leases_later(
                        c, seller, seats, LIMITS, 30, now
                    )
                )
                for now, seats in enumerate([[0], [0, 1], [1], [0]], 1)
            )
        )

    try:
        granted = run_coroutine(ask())
    finally:
        store.close()
    assert [[lease.seat for lease in leases] for leases in granted] == [[0], [0, 1], [1], [0]]
    active = conn.execute(
        "SELECT id, seat FROM leases WHERE state = 'active' ORDER BY seat"
    ).fetchall()
    # The last lease asked for on each seat holds it; every earlier one was handed back.
    assert [tuple(row) for row in active] == [(granted[3][0].id, 0), (granted[2][0].id, 1)]
    handed_back = conn.execute("SELECT count(*) FROM leases WHERE state = 'expired'").fetchone()
    assert handed_back[0] == 3
    # Each handed-back job went back to the queue and was leased again, oldest first.
    assert sorted({lease.job_id for leases in granted for lease in leases}) == [1, 2]
    _consistent_slots(conn)
    assert integrity.check(conn) == []
