"""The lease asks of one operation of the writer served together: on PostgreSQL a few
statements for all of them, whatever their number.

The writer runs the asks arriving in one turn of the event loop as one operation (market.
gather, market.posting): in single leasing one ask a seat, dozens of them. Served one by
one (leasing._lease_postgres), each ask costs the server a statement, and, in one
transaction, the k-th ask walks past the index entries of the k - 1 jobs the asks before it
took (each job's taken version leaves the ready index, but not until the transaction
ends can its old entry be dropped): the server's CPU per lease grew with the asks of the
batch. Here, for all the asks, one SELECT (the operation's one wait for the server): the
oldest fitting jobs, locked (SKIP LOCKED: other instances lease other jobs), with the
networks that hold or held a standing lease of each, the trust rows the solo rule needs,
and whether a seat named holds an active lease (rare: then each ask is served on its own,
handing its seats' leases back first); the jobs assigned here, ask by ask in their order,
as each ask alone would take them; all the slots written by one UPDATE, all the leases by
one INSERT, read Later. An ask left short while the queue may hold more jobs it fits
deeper down gets leasing's own statement for its seats left.

SQLite serves each ask on its own (leasing.grant_leases_later): its statements cost no
round trip, and the leases are the same.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

from market import leasing, trust
from market.dialect import Connection, is_postgres
from market.hosts import Host
from market.later import Later
from market.leasing import Fit, Lease


class Ask(NamedTuple):
    """The leases one request asks for: a lease on each of `seats` while jobs last."""

    host: Host
    seats: list[int]
    limits: Fit


@functools.cache
def _candidates_text(count: int) -> str:
    """The `count` oldest jobs with a free slot within the widest asker's limits, locked
    (jobs another instance is leasing skipped): ('job', id, program, program's size, input,
    cpu, wall, memory, output, adaptive, slots, networks holding a standing lease of it);
    then a ('trust', host, program, valid) per asking host trusted for the program of an
    adaptive job among them, and a ('held', ...) per seat named that holds an active lease
    (rare). `count` in the text, as in leasing._READY_TEXT."""
    return f"""
        WITH ready AS (
            SELECT id, program, input, cpu_seconds, wall_seconds, memory_bytes, output_bytes,
                   adaptive, slots
            FROM jobs
            WHERE state = 'open' AND slots > 0 AND memory_bytes <= ? AND cpu_seconds <= ?
              AND output_bytes <= ?
            ORDER BY id LIMIT {count} FOR UPDATE SKIP LOCKED
        )
        SELECT 'job', r.id, r.program, (SELECT size FROM programs p WHERE p.sha256 = r.program),
               r.input, r.cpu_seconds, r.wall_seconds, r.memory_bytes, r.output_bytes,
               r.adaptive, r.slots,
               (SELECT array_agg(l.network) FROM leases l
                WHERE l.job_id = r.id AND l.state != 'expired')
        FROM ready r
        UNION ALL
        SELECT 'trust', NULL, t.program, NULL, NULL, NULL, NULL, NULL, NULL, t.valid, NULL,
               ARRAY[t.host_id]
        FROM trust t
        WHERE t.host_id = ANY(CAST(? AS TEXT[])) AND t.valid >= {trust.TRUSTED}
          AND t.program IN (SELECT program FROM ready WHERE adaptive = 1)
        UNION ALL
        SELECT 'held', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
        FROM leases
        WHERE state = 'active' AND (host_id, seat) IN (
            SELECT host_id, seat FROM unnest(CAST(? AS TEXT[]), CAST(? AS INTEGER[]))
                AS named(host_id, seat))
    """


# The jobs' slots after the leases taken (the rows are locked: the values read stand).
_SLOTS = """
    UPDATE jobs SET slots = taken.slots
    FROM unnest(CAST(? AS BIGINT[]), CAST(? AS INTEGER[])) AS taken(id, slots)
    WHERE jobs.id = taken.id
"""

_INSERT = """
    INSERT INTO leases (job_id, order_id, seller, state, created, deadline, host_id, seat,
                        network, solo)
    SELECT job_id, order_id, CAST(seat AS TEXT), 'active', ?, ?, host_id, seat, network, solo
    FROM unnest(CAST(? AS BIGINT[]), CAST(? AS TEXT[]), CAST(? AS TEXT[]),
                CAST(? AS INTEGER[]), CAST(? AS TEXT[]), CAST(? AS INTEGER[]))
        AS taken(job_id, order_id, host_id, seat, network, solo)
    RETURNING id, host_id, seat
"""


def candidate_count(seats: int) -> int:
    """How many jobs to read for `seats` seats: as many, rounded up to a multiple of 16
    past 16 (a statement's text, and the plan kept for it, per count)."""
    return seats if seats <= 16 else -(-seats // 16) * 16


def grant_many(
    conn: Connection,
    asks: Sequence[Ask],
    lease_seconds: float,
    now: float,
    chance: Callable[[], float] = random.random,
) -> list[Later[list[Lease]]]:
    """The leases of each ask, as leasing.grant_leases_later would grant them to the asks
    one after the other: oldest fitting job first, each seat's previous active lease
    handed back, the solo rule's chances drawn ask after ask (on PostgreSQL one for each
    seat named, the k-th for the ask's k-th job)."""
    for ask in asks:
        leasing.check_seats(ask.host, ask.seats)
    if not is_postgres(conn) or len(asks) < 2:
        # One ask: leasing's one statement costs no wait for the server.
        return [
            leasing.grant_leases_later(conn, a.host, a.seats, a.limits, lease_seconds, now, chance)
            for a in asks
        ]
    drawn = [[chance() for _ in ask.seats] for ask in asks]
    named = [(ask.host.id, seat) for ask in asks for seat in ask.seats]
    if len(set(named)) != len(named):
        # Two asks on one seat (rare: a seller asking again): served one after the other,
        # the second handing the first's lease back.
        return _each(conn, asks, drawn, lease_seconds, now, chance)
    count = candidate_count(len(named))
    widest = [max(leasing.fit_bounds(ask.limits)[n] for ask in asks) for n in range(3)]
    rows = conn.execute(
        _candidates_text(count),
        (
            *widest,
            sorted({ask.host.id for ask in asks}),
            [host for host, _ in named],
            [seat for _, seat in named],
        ),
    ).fetchall()
    if any(row[0] == "held" for row in rows):
        # Rare: a seat asks while it holds a lease. Each ask served on its own, handing
        # its seats' leases back first, as one after the other.
        return _each(conn, asks, drawn, lease_seconds, now, chance)
    jobs = sorted((row for row in rows if row[0] == "job"), key=lambda row: int(row[1]))
    valid = {(row[11][0], row[2]): int(row[9]) for row in rows if row[0] == "trust"}
    taken, slots = _assign(asks, drawn, jobs, valid)
    stored = _store(conn, asks, jobs, taken, slots, lease_seconds, now)
    deadline = now + lease_seconds
    granted = []
    for number, (ask, picks) in enumerate(zip(asks, taken, strict=True)):
        rest: Later[list[Lease]] = Later(list)
        if len(picks) < len(ask.seats) and len(jobs) == count:
            # The queue may hold jobs this ask takes deeper down: leasing's own statement
            # for its seats left (it sees the rows written above).
            seats = ask.seats[len(picks) :]
            more = _chances(drawn[number][len(picks) :], chance)
            rest = leasing.grant_leases_later(
                conn, ask.host, seats, ask.limits, lease_seconds, now, more
            )
        granted.append(_leases(ask, picks, jobs, stored, deadline, rest))
    return granted


# A job taken for an ask: (its place among the jobs read, the seat, solo).
Pick = tuple[int, int, bool]


def _assign(
    asks: Sequence[Ask],
    drawn: list[list[float]],
    jobs: list[Any],
    valid: dict[tuple[str, str], int],
) -> tuple[list[list[Pick]], list[int]]:
    """The jobs each ask takes, in the asks' order: to each of its seats in turn the oldest
    job with a slot left, within its limits, that its network neither holds nor held; a
    job's slots all taken by a solo lease (the solo rule: leasing._lease_postgres). With
    the jobs' slots left."""
    slots = [int(row[10]) for row in jobs]
    held = [set(row[11] or ()) for row in jobs]
    first = 0  # every job before it has no slot left
    taken: list[list[Pick]] = []
    for ask, chances in zip(asks, drawn, strict=True):
        memory, cpu, output = leasing.fit_bounds(ask.limits)
        network = ask.host.network
        picks: list[Pick] = []
        seats = iter(ask.seats)
        seat = next(seats, None)
        place = first
        while seat is not None and place < len(jobs):
            row = jobs[place]
            if (
                slots[place] > 0
                and row[7] <= memory
                and row[5] <= cpu
                and row[8] <= output
                and network not in held[place]
            ):
                trusted = valid.get((ask.host.id, row[2]), 0) if row[9] else 0
                solo = trusted >= trust.TRUSTED and chances[len(picks)] >= 1.0 / trusted
                slots[place] = 0 if solo else slots[place] - 1
                held[place].add(network)
                picks.append((place, seat, solo))
                seat = next(seats, None)
            place += 1
        while first < len(jobs) and slots[first] == 0:
            first += 1
        taken.append(picks)
    return taken, slots


# The leases stored: (host, seat) -> lease id, read Later.
Stored = Later[dict[tuple[str, int], int]]


def _store(
    conn: Connection,
    asks: Sequence[Ask],
    jobs: list[Any],
    taken: list[list[Pick]],
    slots: list[int],
    lease_seconds: float,
    now: float,
) -> Stored:
    """The slots of the jobs taken, and the leases, written (one statement each)."""
    picks = [(ask, pick) for ask, some in zip(asks, taken, strict=True) for pick in some]
    if not picks:
        return Later(dict)
    places = sorted({place for _, (place, _, _) in picks})
    conn.execute(_SLOTS, ([int(jobs[p][1]) for p in places], [slots[p] for p in places]))
    stored = conn.execute(
        _INSERT,
        (
            now,
            now + lease_seconds,
            [int(jobs[place][1]) for _, (place, _, _) in picks],
            [ask.host.order_id for ask, _ in picks],
            [ask.host.id for ask, _ in picks],
            [seat for _, (_, seat, _) in picks],
            [ask.host.network for ask, _ in picks],
            [int(solo) for _, (_, _, solo) in picks],
        ),
    )
    ids: dict[tuple[str, int], int] = {}

    def read() -> dict[tuple[str, int], int]:
        if not ids:  # once, however many asks read it
            ids.update({(str(h), int(s)): int(i) for i, h, s in stored.fetchall()})
        return ids

    return Later(read)


def _leases(
    ask: Ask,
    picks: list[Pick],
    jobs: list[Any],
    stored: Stored,
    deadline: float,
    rest: Later[list[Lease]],
) -> Later[list[Lease]]:
    """An ask's leases, oldest job first: those taken from the jobs read, then the rest."""

    def leases() -> list[Lease]:
        ids = stored.value()
        return [
            leasing.lease_of(ids[(ask.host.id, seat)], seat, deadline, jobs[place][1:9])
            for place, seat, _ in picks
        ] + rest.value()

    return Later(leases)


def _each(
    conn: Connection,
    asks: Sequence[Ask],
    drawn: list[list[float]],
    lease_seconds: float,
    now: float,
    chance: Callable[[], float],
) -> list[Later[list[Lease]]]:
    """Each ask served on its own (leasing.grant_leases_later), with its chances drawn, and
    read before the next: an ask that hands a lease back finishes its leasing when read,
    and the next ask on that seat must find it done (else two leases on one seat: the
    unique index refuses the second, and the whole operation with it)."""
    granted: list[Later[list[Lease]]] = []
    for ask, some in zip(asks, drawn, strict=True):
        leases = leasing.grant_leases(
            conn, ask.host, ask.seats, ask.limits, lease_seconds, now, _chances(some, chance)
        )
        granted.append(Later(functools.partial(list, leases)))
    return granted


def _chances(drawn: list[float], more: Callable[[], float]) -> Callable[[], float]:
    """The chances already drawn, in order, then `more`'s."""
    left: Iterator[float] = iter(drawn)

    def draw() -> float:
        for value in left:
            return value
        return more()

    return draw
