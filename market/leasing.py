"""Leases: a job handed to one seat of one host until a deadline, extended, released or expired.

A host holds at most one active lease per seat (asking again on a seat hands the previous
lease back), a job is never leased twice to one network while a lease or result of that
network stands, and no lease is extended past its job's wall-clock limit. Every change to a
job's leases updates its slots (market.slots).
"""

from __future__ import annotations

import functools
import random
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from cpushare.limits import JobLimits
from market import later, trust
from market.dialect import Connection, is_postgres
from market.errors import Conflict, Forbidden, Gone, MarketError, NotFound
from market.hosts import Host
from market.later import Later
from market.slots import refresh_slots

# What a seller takes: (memory bytes, CPU seconds) and, if it says, (..., output bytes).
Fit = tuple[int, int] | tuple[int, int, int]
NO_OUTPUT_CAP = 1 << 40

# A lease may outlive its job's wall-clock limit by this much: the seller downloads the
# program and starts the jail after leasing, and posts the result after the jail ends.
WALL_GRACE_SECONDS = 30.0


class Lease(NamedTuple):
    """A job handed to one seat until `deadline` (extendable). (A named tuple: a batch makes
    one per seat, and a frozen dataclass costs three times as much to make.)"""

    id: int
    job_id: int
    program_sha256: str
    program_size: int
    input: bytes
    limits: JobLimits
    deadline: float
    seat: int


def grant_lease(
    conn: Connection,
    host: Host,
    seat: int,
    limits: Fit,
    lease_seconds: float,
    now: float,
    chance: Callable[[], float] = random.random,
) -> Lease | None:
    """Lease the oldest job this host may take within (memory bytes, CPU seconds), or None.

    The seat's previous active lease, if any, is handed back first.
    """
    if not 0 <= seat < host.seats:
        raise MarketError(f"seat must be from 0 to {host.seats - 1}: this host has {host.seats}")
    granted = grant_leases(conn, host, [seat], limits, lease_seconds, now, chance)
    return granted[0] if granted else None


def check_seats(host: Host, seats: list[int]) -> None:
    """Refuse a batch naming a seat twice or a seat this host does not have."""
    if not seats:
        raise MarketError("field 'seats' must name at least one seat")
    if len(set(seats)) != len(seats):
        raise MarketError("field 'seats' names a seat twice: each seat holds one lease")
    for seat in seats:
        if not 0 <= seat < host.seats:
            raise MarketError(
                f"seat {seat} is not one of this host's: seats go from 0 to {host.seats - 1}"
            )


# The jobs a network may lease: open, with a free slot, within the seller's limits, and not
# leased or answered by that network already. Oldest first, `count` of them (in the text, so
# that the plan PostgreSQL keeps for the statement knows how few it takes). On PostgreSQL
# the NOT EXISTS ends in OFFSET 0 ({barrier}), which keeps it a lookup of (job, network) per
# job looked at: made an anti-join, PostgreSQL's kept plan walked the whole of leases_network
# (job_id first) for the network's leases, every lease, a walk as long as the market's
# history (and most of the server's CPU per lease in scripts/bench_market.py).
_READY_TEXT = """
    SELECT {columns} FROM jobs
    WHERE state = 'open' AND slots > 0 AND memory_bytes <= ? AND cpu_seconds <= ?
      AND output_bytes <= ?
      AND NOT EXISTS (SELECT 1 FROM leases l WHERE l.job_id = jobs.id
                      AND l.network = ? AND l.state != 'expired'{barrier})
    ORDER BY id LIMIT {count}
"""


# The limits of leased jobs, made once for each distinct set (a buyer's batch shares
# one): 0.2 us a lease against 0.9 to make them anew.
_limits = functools.lru_cache(maxsize=256, typed=True)(JobLimits)


def lease_of(lease_id: int, seat: int, deadline: float, job: Sequence[Any]) -> Lease:
    """The Lease of a job's row: (id, program, program's size, input, cpu, wall, memory,
    output, ...)."""
    job_id, program, size, data, cpu, wall, memory, output = job[:8]
    # Lease's fields in order (_make): about 1.3 us a lease against 2.2 by keyword.
    return Lease._make(
        (
            int(lease_id),
            int(job_id),
            program,
            int(size),
            bytes(data),
            _limits(cpu, wall, memory, output),
            deadline,
            int(seat),
        ),
    )


def _ready_text(postgres: bool, count: int, columns: str = "id") -> str:
    barrier = " OFFSET 0" if postgres else ""
    return _READY_TEXT.format(count=count, barrier=barrier, columns=columns)


def fit_bounds(limits: Fit) -> tuple[int, int, int]:
    """A seller's (memory bytes, CPU seconds, output bytes) (no output cap if it named none)."""
    output = limits[2] if len(limits) > 2 else NO_OUTPUT_CAP
    return limits[0], limits[1], output


def _ready_parameters(network: str, limits: Fit) -> tuple[int, int, int, str]:
    return (*fit_bounds(limits), network)


def grant_leases(
    conn: Connection,
    host: Host,
    seats: list[int],
    limits: Fit,
    lease_seconds: float,
    now: float,
    chance: Callable[[], float] = random.random,
) -> list[Lease]:
    """grant_leases_later(), its leases read at once."""
    return grant_leases_later(conn, host, seats, limits, lease_seconds, now, chance).value()


def grant_leases_later(
    conn: Connection,
    host: Host,
    seats: list[int],
    limits: Fit,
    lease_seconds: float,
    now: float,
    chance: Callable[[], float] = random.random,
) -> Later[list[Lease]]:
    """A lease for each of `seats` in turn while jobs last (as grant_lease: each seat's
    previous active lease is handed back, on every seat named, leased or not).

    On PostgreSQL one statement (_grant_postgres). On SQLite two however many seats when
    a job is taken for each: the jobs taken (a slot each) and the leases stored. Leasing
    is the market's most frequent write, and a seat nearly always asks with no lease of
    its own out: the seats' previous leases are looked for only when a seat is left
    without a job, or when storing the leases finds a seat still holding one (its unique
    index, leases_seat, refuses the row: nothing of the INSERT is kept). They are handed
    back then, and if there were any, the jobs just taken get their slots back, the
    handed-back jobs' slots are recomputed and the jobs taken again, as if handed back
    first."""
    check_seats(host, seats)
    if is_postgres(conn):
        return _grant_postgres(conn, host, seats, limits, lease_seconds, now, chance)
    taken = _take(conn, host, len(seats), limits)
    if len(taken) == len(seats):
        try:
            return _store_leases(conn, host, seats, taken, lease_seconds, now, chance)
        except sqlite3.IntegrityError as exc:
            if "UNIQUE" not in str(exc):
                raise
            # A seat holds an active lease: handed back below, the jobs taken again.
    marks = ", ".join(["?"] * len(seats))
    handing_back = conn.execute(
        "UPDATE leases SET state = 'expired', deadline = ?, released = ? "
        f"WHERE host_id = ? AND seat IN ({marks}) AND state = 'active' RETURNING job_id",
        (now, now, host.id, *seats),
    )
    handed_back = sorted({int(row[0]) for row in handing_back.fetchall()})
    if handed_back:
        if taken:
            conn.execute(
                f"UPDATE jobs SET slots = slots + 1 WHERE id IN ({', '.join(['?'] * len(taken))})",
                [row[0] for row in taken],
            )
        for job_id in handed_back:
            refresh_slots(conn, job_id)
        taken = _take(conn, host, len(seats), limits)
    return _store_leases(conn, host, seats, taken, lease_seconds, now, chance)


def _store_leases(
    conn: Connection,
    host: Host,
    seats: list[int],
    taken: list[Any],
    lease_seconds: float,
    now: float,
    chance: Callable[[], float],
) -> Later[list[Lease]]:
    """The leases of the jobs _take took, to `seats` in turn (oldest job first), solo as
    _solo decides; their ids read Later."""
    if not taken:
        return Later(list)
    taken.sort(key=lambda row: int(row[0]))
    solo = [int(alone) for alone in _solo(conn, host, taken, chance)]
    deadline = now + lease_seconds
    rows = [
        (row[0], host.order_id, str(seat), now, deadline, host.id, seat, host.network, alone)
        for row, seat, alone in zip(taken, seats, solo, strict=False)
    ]
    stored = conn.execute(_insert_leases(len(rows)), [value for row in rows for value in row])
    lease_ids = later.rows(conn, stored)
    if any(solo):
        # A solo lease's result will stand alone: nobody else is asked meanwhile. (After
        # the INSERT, which a seat still holding a lease refuses: grant_leases_later.)
        ids = [int(row[0]) for row, alone in zip(taken, solo, strict=True) if alone]
        conn.execute(f"UPDATE jobs SET slots = 0 WHERE id IN ({', '.join(['?'] * len(ids))})", ids)

    def leases() -> list[Lease]:
        ids = {int(seat): int(lease_id) for lease_id, seat in lease_ids.value()}
        return [
            lease_of(ids[seat], seat, deadline, row)
            for row, seat in zip(taken, seats, strict=False)
        ]

    return Later(leases)


@functools.cache
def _insert_leases(count: int) -> str:
    """_store_leases' INSERT of `count` leases."""
    return (
        "INSERT INTO leases (job_id, order_id, seller, state, created, deadline, host_id, seat, "
        "network, solo) VALUES "
        + ", ".join(["(?, ?, ?, 'active', ?, ?, ?, ?, ?, ?)"] * count)
        + " RETURNING id, seat"
    )


@functools.cache
def _lease_postgres(count: int) -> str:
    """The seats' active leases handed back, then up to `count` jobs taken and leased to the
    seats, in one statement: each job's slot (all of them for a solo lease: _solo's rule,
    its chance drawn beforehand for the k-th job taken) and its lease row. Its rows: a
    ('lease', lease, seat, job's columns ...) per lease, oldest job first, and a
    ('back', job) per lease handed back.

    The rest of a statement sees the tables as they were before it, not as its hand-back
    leaves them: when a lease was handed back (rare: a seat asks while it holds one), the
    statement takes and stores nothing, and the leasing is finished when it is read
    (_grant_postgres)."""
    marks = ", ".join(["?"] * count)
    return f"""
        WITH back AS (
            UPDATE leases SET state = 'expired', deadline = ?, released = ?
            WHERE host_id = ? AND seat IN ({marks}) AND state = 'active'
            RETURNING job_id
        ), picked AS (
            SELECT id, program, adaptive
            FROM ({_ready_text(True, count, "id, program, adaptive")}
                  FOR UPDATE SKIP LOCKED) AS ready
            WHERE NOT EXISTS (SELECT 1 FROM back)
        ), decided AS (
            SELECT id, k, CASE WHEN adaptive = 1 AND valid >= {trust.TRUSTED}
                THEN (CAST(? AS FLOAT8[]))[k] >= 1.0 / valid ELSE false END AS solo
            FROM (SELECT p.id, p.adaptive, t.valid, row_number() OVER (ORDER BY p.id) AS k
                  FROM picked p LEFT JOIN trust t ON t.host_id = ? AND t.program = p.program
                 ) AS ranked
        ), taken AS (
            UPDATE jobs SET slots = CASE WHEN d.solo THEN 0 ELSE jobs.slots - 1 END
            FROM decided d WHERE jobs.id = d.id
            RETURNING jobs.id, d.k, d.solo, (CAST(? AS INTEGER[]))[d.k] AS seat, jobs.program,
                      jobs.input, jobs.cpu_seconds, jobs.wall_seconds, jobs.memory_bytes,
                      jobs.output_bytes
        ), stored AS (
            INSERT INTO leases (job_id, order_id, seller, state, created, deadline, host_id,
                                seat, network, solo)
            SELECT t.id, ?, CAST(t.seat AS TEXT), 'active', ?, ?, ?, t.seat, ?,
                   CASE WHEN t.solo THEN 1 ELSE 0 END
            FROM taken t
            RETURNING id, job_id, seat
        )
        SELECT 'lease', l.id, l.seat, t.id, t.program,
               (SELECT size FROM programs p WHERE p.sha256 = t.program), t.input,
               t.cpu_seconds, t.wall_seconds, t.memory_bytes, t.output_bytes, t.k
        FROM stored l JOIN taken t ON t.id = l.job_id
        UNION ALL
        SELECT 'back', NULL, NULL, job_id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
        FROM back
    """


def _grant_postgres(
    conn: Connection,
    host: Host,
    seats: list[int],
    limits: Fit,
    lease_seconds: float,
    now: float,
    chance: Callable[[], float],
) -> Later[list[Lease]]:
    """grant_leases_later() on PostgreSQL: one statement (_lease_postgres), read Later, so
    a lease does not wait for the server inside the writer's batch, and costs it one
    statement. A seat nearly always asks with no lease of its own out; when it held one,
    the statement only handed it back: once it is read, the handed-back jobs' slots are
    recomputed and the jobs taken and leased as on SQLite, as if handed back first."""
    deadline = now + lease_seconds
    statement = conn.execute(
        _lease_postgres(len(seats)),
        (
            now,
            now,
            host.id,
            *seats,
            *_ready_parameters(host.network, limits),
            [chance() for _ in seats],
            host.id,
            seats,
            host.order_id,
            now,
            deadline,
            host.id,
            host.network,
        ),
    )

    def leases() -> list[Lease]:
        rows = statement.fetchall()
        handed_back = sorted({int(row[3]) for row in rows if row[0] == "back"})
        if handed_back:
            for job_id in handed_back:
                refresh_slots(conn, job_id)
            taken = _take(conn, host, len(seats), limits)
            return _store_leases(conn, host, seats, taken, lease_seconds, now, chance).value()
        granted = sorted((row for row in rows if row[0] == "lease"), key=lambda row: row[11])
        return [lease_of(row[1], row[2], deadline, row[3:11]) for row in granted]

    return Later(leases)


def _take(conn: Connection, host: Host, count: int, limits: Fit) -> list[Any]:
    """Up to `count` jobs for the host's network, a slot each: their (id, program, program
    size, input, CPU seconds, wall seconds, memory bytes, output bytes, adaptive)."""
    # Distinct jobs, so one network never takes one job twice; `slots > 0` in _READY_TEXT keeps
    # the count from going below zero. The lock lets instances lease different jobs at once.
    return conn.execute(
        _take_text(is_postgres(conn), count), _ready_parameters(host.network, limits)
    ).fetchall()


@functools.cache
def _take_text(postgres: bool, count: int) -> str:
    """_take's statement, made once per engine and count (not formatted for each lease)."""
    lock = " FOR UPDATE SKIP LOCKED" if postgres else ""
    return (
        f"UPDATE jobs SET slots = slots - 1 WHERE id IN ({_ready_text(postgres, count)}{lock}) "
        "RETURNING id, program, (SELECT size FROM programs p WHERE p.sha256 = jobs.program), "
        "input, cpu_seconds, wall_seconds, memory_bytes, output_bytes, adaptive"
    )


def _solo(
    conn: Connection, host: Host, taken: list[Any], chance: Callable[[], float]
) -> list[bool]:
    """Whether each taken job's lease goes to this host solo (adaptive jobs only: market.trust)."""
    valid: dict[str, int] = {}
    solo = []
    for row in taken:
        program, adaptive = row[1], row[8]
        if adaptive and program not in valid:
            valid[program] = trust.valid_results(conn, host.id, program)
        solo.append(bool(adaptive) and trust.stands_alone(valid[program], chance))
    return solo


def ready_job(conn: Connection, network: str, limits: Fit, *, lock: bool = False) -> int | None:
    """The oldest job with a free slot that fits and that this network has not taken;
    `lock` (as a lease takes it) skips jobs another instance is leasing right now."""
    row = conn.execute(*ready_statement(is_postgres(conn), network, limits, lock=lock)).fetchone()
    return None if row is None else int(row[0])


def ready_statement(
    postgres: bool, network: str, limits: Fit, *, lock: bool = False
) -> tuple[str, tuple[int, int, int, str]]:
    """ready_job's query and its parameters, for an engine (PostgreSQL's lock clause with
    `lock`)."""
    lock_clause = " FOR UPDATE SKIP LOCKED" if postgres and lock else ""
    return _ready_text(postgres, 1) + lock_clause, _ready_parameters(network, limits)


def expire_leases(conn: Connection, now: float) -> int:
    """Put the jobs of leases past their deadline back in the queue; return how many."""
    rows = conn.execute(
        "SELECT id, job_id FROM leases WHERE state = 'active' AND deadline < ?", (now,)
    ).fetchall()
    conn.executemany("UPDATE leases SET state = 'expired' WHERE id = ?", [(r[0],) for r in rows])
    for job_id in sorted({r[1] for r in rows}):
        refresh_slots(conn, job_id)
    return len(rows)


def own_lease(conn: Connection, lease_id: int, host_id: str) -> tuple[int, str, float]:
    """(job, state, deadline) of a lease of this host; Forbidden if another host's."""
    row = conn.execute(
        "SELECT job_id, host_id, state, deadline FROM leases WHERE id = ?", (lease_id,)
    ).fetchone()
    if row is None:
        raise NotFound(f"no lease {lease_id}")
    if row[1] != host_id:
        raise Forbidden(f"lease {lease_id} belongs to another host")
    return int(row[0]), str(row[2]), float(row[3])


def _active(conn: Connection, lease_id: int, host_id: str, now: float) -> int:
    job_id, state, deadline = own_lease(conn, lease_id, host_id)
    if state == "done":
        raise Conflict(f"lease {lease_id} already has its result")
    if state == "expired" or deadline < now:
        raise Gone(f"lease {lease_id} expired and its job went back to the queue")
    return job_id


def extend_lease(
    conn: Connection, lease_id: int, host_id: str, lease_seconds: float, now: float
) -> float:
    """Push an active lease's deadline to now + lease_seconds, never past its job's
    wall-clock limit (plus WALL_GRACE_SECONDS); return the new deadline."""
    _active(conn, lease_id, host_id, now)
    created, wall = conn.execute(
        "SELECT l.created, j.wall_seconds FROM leases l JOIN jobs j ON j.id = l.job_id "
        "WHERE l.id = ?",
        (lease_id,),
    ).fetchone()
    limit = float(created) + float(wall) + WALL_GRACE_SECONDS
    if now >= limit:
        raise Conflict(
            f"lease {lease_id} reached its job's wall-clock limit of {wall:g} s: "
            "it is not extended again"
        )
    deadline = min(now + lease_seconds, limit)
    conn.execute("UPDATE leases SET deadline = ? WHERE id = ?", (deadline, lease_id))
    return deadline


def release_lease(conn: Connection, lease_id: int, host_id: str, now: float) -> None:
    """Hand an active lease back: its job goes back to the queue now, not at its deadline."""
    _hand_back(conn, lease_id, _active(conn, lease_id, host_id, now), now)


def _hand_back(conn: Connection, lease_id: int, job_id: int, now: float) -> None:
    conn.execute(
        "UPDATE leases SET state = 'expired', deadline = ?, released = ? WHERE id = ?",
        (now, now, lease_id),
    )
    refresh_slots(conn, job_id)


def active_seats(conn: Connection, host_id: str, lease_ids: list[int]) -> set[int]:
    """The seats on which these leases of this host are still active."""
    rows = conn.execute(
        f"SELECT seat FROM leases WHERE id IN ({', '.join(['?'] * len(lease_ids))}) "
        "AND host_id = ? AND state = 'active'",
        (*lease_ids, host_id),
    ).fetchall()
    return {int(row[0]) for row in rows}
