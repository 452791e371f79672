"""The lease asks of one operation granted together (market.grants): on PostgreSQL by a few
statements for all of them, on SQLite ask after ask; the same leases either way, and the
same as the asks granted one after the other (leasing.grant_leases_later)."""

from __future__ import annotations

from collections.abc import Callable

from market import grants, integrity, leasing, trust
from market.dialect import Connection, Location
from market.grants import Ask
from market.hosts import Host
from market.later import Later
from market.leasing import Lease
from market.slots import refresh_slots
from market.store import Store
from tests.market.helpers import LIMITS, SHA, host, job

# (job, host, seat) of each lease granted, ask by ask.
Granted = list[list[tuple[int, str, int]]]


def _granted(leased: list[Later[list[Lease]]], asks: list[Ask]) -> Granted:
    return [
        [(lease.job_id, ask.host.id, lease.seat) for lease in later.value()]
        for ask, later in zip(asks, leased, strict=True)
    ]


def _all(leased: list[Later[list[Lease]]]) -> Later[list[list[Lease]]]:
    return Later(lambda: [later.value() for later in leased])


def _drawn(chances: list[float]) -> Callable[[], float]:
    left = iter(chances)
    return lambda: next(left)


def _consistent(conn: Connection) -> None:
    """Every job's slots as market.slots would compute them, and the books whole."""
    stored = dict(conn.execute("SELECT id, slots FROM jobs").fetchall())
    for job_id, slots in stored.items():
        assert refresh_slots(conn, job_id) == slots, f"job {job_id}"
    assert integrity.check(conn) == []


def _one_after_another(conn: Connection, asks: list[Ask], chances: list[float]) -> Granted:
    """What the asks get granted one after the other, in a transaction rolled back."""
    conn.execute("BEGIN")
    try:
        chance = _drawn(chances)
        return [
            [
                (lease.job_id, ask.host.id, lease.seat)
                for lease in leasing.grant_leases(
                    conn, ask.host, ask.seats, ask.limits, 30, 5, chance
                )
            ]
            for ask in asks
        ]
    finally:
        conn.execute("ROLLBACK")


def test_hosts_asking_together_get_distinct_jobs_and_replicas_distinct_networks(
    conn: Connection,
) -> None:
    single = [job(conn, replicas=1) for _ in range(5)]
    pairs = [job(conn, replicas=2) for _ in range(3)]
    sellers = [host(conn, "alice", f"10.0.0.{n}", seats=2) for n in range(1, 5)]
    # Two hosts on one network: they count as one where replicas must agree.
    twin = host(conn, "bob", "10.0.0.1", seats=2)
    asks = [Ask(seller, [0, 1], LIMITS) for seller in [*sellers, twin]]
    expected = _one_after_another(conn, asks, [0.5] * 10)
    granted = _granted(grants.grant_many(conn, asks, 30, 5), asks)
    assert granted == expected
    # Oldest first: the first ask the two oldest jobs, on its seats in order.
    assert granted[0] == [(single[0], sellers[0].id, 0), (single[1], sellers[0].id, 1)]
    taken = [job_id for leases in granted for job_id, _, _ in leases]
    assert sorted(job_id for job_id in taken if job_id in single) == single
    network = {seller.id: seller.network for seller in [*sellers, twin]}
    for pair in pairs:
        holders = [network[h] for leases in granted for j, h, _ in leases if j == pair]
        assert len(holders) == len(set(holders)) <= 2, (pair, holders)
    # Ten seats for the five single jobs and the three pairs' six replicas: one left.
    assert len(taken) == 10
    assert conn.execute("SELECT count(*) FROM jobs WHERE slots > 0").fetchone()[0] == 1
    _consistent(conn)


def test_an_ask_whose_limits_fit_only_a_deep_job_still_gets_it(conn: Connection) -> None:
    big = [job(conn, replicas=1, cpu_seconds=600) for _ in range(40)]
    small = job(conn, replicas=1, cpu_seconds=10)
    sellers = [host(conn, "alice", f"10.0.0.{n}") for n in range(1, 4)]
    modest = host(conn, "bob", "10.0.1.1")
    asks = [
        *(Ask(seller, [0], (256 << 20, 3600)) for seller in sellers),
        Ask(modest, [0], (256 << 20, 10)),  # fits only the newest job, read past the rest
    ]
    expected = _one_after_another(conn, asks, [0.5] * 4)
    granted = _granted(grants.grant_many(conn, asks, 30, 5), asks)
    assert granted == expected
    assert [leases[0][0] for leases in granted] == [*big[:3], small]
    _consistent(conn)


def test_a_seat_asking_while_it_holds_a_lease_hands_it_back(conn: Connection) -> None:
    jobs = [job(conn, replicas=1) for _ in range(4)]
    alice = host(conn, "alice", "10.0.0.1", seats=2)
    bob = host(conn, "bob", "10.0.0.2")
    (held,) = leasing.grant_leases(conn, alice, [1], LIMITS, 30, 0)
    assert held.job_id == jobs[0]
    asks = [Ask(bob, [0], LIMITS), Ask(alice, [0, 1], LIMITS)]
    expected = _one_after_another(conn, asks, [0.5] * 3)
    granted = _granted(grants.grant_many(conn, asks, 30, 5), asks)
    assert granted == expected
    # Bob asked first: the second job. Alice's ask hands her seat's lease back, and its
    # job, the oldest again, goes to her first seat.
    assert granted == [[(jobs[1], bob.id, 0)], [(jobs[0], alice.id, 0), (jobs[2], alice.id, 1)]]
    state = conn.execute("SELECT state FROM leases WHERE id = ?", (held.id,)).fetchone()[0]
    assert state == "expired"
    _consistent(conn)


def test_two_asks_of_one_host_in_one_operation(conn: Connection) -> None:
    jobs = [job(conn, replicas=2) for _ in range(3)]
    alice = host(conn, "alice", "10.0.0.1", seats=3)
    bob = host(conn, "bob", "10.0.0.2", seats=1)
    # Two seats of one host asking apart, as single leasing does: one network, so never
    # the same job twice, whatever its replicas.
    asks = [Ask(alice, [0], LIMITS), Ask(bob, [0], LIMITS), Ask(alice, [2, 1], LIMITS)]
    expected = _one_after_another(conn, asks, [0.5] * 4)
    granted = _granted(grants.grant_many(conn, asks, 30, 5), asks)
    assert granted == expected
    assert granted == [
        [(jobs[0], alice.id, 0)],
        [(jobs[0], bob.id, 0)],
        [(jobs[1], alice.id, 2), (jobs[2], alice.id, 1)],
    ]
    # And one seat named by two asks: the second hands the first's lease back.
    again = [Ask(bob, [0], LIMITS), Ask(bob, [0], LIMITS)]
    first, second = _granted(grants.grant_many(conn, again, 30, 6), again)
    assert len(first) == len(second) == 1
    active = conn.execute(
        "SELECT job_id FROM leases WHERE host_id = ? AND state = 'active'", (bob.id,)
    ).fetchall()
    assert [row[0] for row in active] == [second[0][0]]
    _consistent(conn)


def test_the_solo_rule_draws_its_chances_ask_after_ask(conn: Connection) -> None:
    adaptive = [job(conn) for _ in range(5)]
    sellers = [host(conn, "alice", f"10.0.0.{n}", seats=2) for n in range(1, 4)]
    for seller, valid in zip(sellers, (20, 20, trust.TRUSTED - 1), strict=True):
        conn.execute(
            "INSERT INTO trust (host_id, program, valid) VALUES (?, ?, ?)", (seller.id, SHA, valid)
        )
    asks = [Ask(sellers[0], [1, 0], LIMITS), Ask(sellers[1], [0], LIMITS)]
    asks.append(Ask(sellers[2], [0, 1], LIMITS))
    # 1/20 or more stands alone: the first ask's second job, and the second ask's job.
    chances = [0.01, 0.99, 0.5, 0.99, 0.99]
    expected = _one_after_another(conn, asks, chances)
    granted = _granted(grants.grant_many(conn, asks, 30, 5, _drawn(chances)), asks)
    assert granted == expected
    # 1/20 or more stands alone: the first ask's second job, and the second ask's (the
    # first job's second replica). A host short of trust never does, whatever its chance.
    assert granted == [
        [(adaptive[0], sellers[0].id, 1), (adaptive[1], sellers[0].id, 0)],
        [(adaptive[0], sellers[1].id, 0)],
        [(adaptive[2], sellers[2].id, 0), (adaptive[3], sellers[2].id, 1)],
    ]
    solo = conn.execute("SELECT job_id, host_id FROM leases WHERE solo = 1").fetchall()
    assert sorted(tuple(row) for row in solo) == [
        (adaptive[0], sellers[1].id),
        (adaptive[1], sellers[0].id),
    ]
    slots = dict(conn.execute("SELECT id, slots FROM jobs").fetchall())
    assert [slots[j] for j in adaptive] == [0, 0, 1, 1, 2]
    _consistent(conn)


def test_asks_granted_together_in_the_writer(market_location: Location, conn: Connection) -> None:
    """Through the store's writer (its statements pipelined on PostgreSQL, the leases read
    once the batch is answered), many single asks as single leasing sends them."""
    jobs = [job(conn, replicas=1) for _ in range(30)]
    sellers: list[Host] = [host(conn, "alice", f"10.0.1.{n}", seats=4) for n in range(1, 8)]
    asks = [Ask(seller, [seat], LIMITS) for seat in range(4) for seller in sellers]
    store = Store(market_location)
    try:
        leased = store.write_sync(lambda c: _all(grants.grant_many(c, asks, 30, 5)))
    finally:
        store.close()
    assert [[(lease.job_id, lease.seat) for lease in leases] for leases in leased] == [
        [(job_id, ask.seats[0])] for job_id, ask in zip(jobs, asks, strict=False)
    ]
    assert all(lease.id > 0 and lease.input == b"input" for leases in leased for lease in leases)
    assert conn.execute("SELECT count(*) FROM leases WHERE state = 'active'").fetchone()[0] == 28
    # Two jobs left, their slots untouched.
    assert conn.execute("SELECT count(*) FROM jobs WHERE slots > 0").fetchone()[0] == 2
    _consistent(conn)
