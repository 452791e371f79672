"""Leases: a job handed to one seller until a deadline, extended, released or expired.

Every change to a job's leases updates its slots (market.slots).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from cpushare.limits import JobLimits
from market.errors import Conflict, Forbidden, Gone, NotFound
from market.slots import refresh_slots, take_slot


@dataclass(frozen=True)
class Lease:
    """A job handed to one seller until `deadline` (extendable)."""

    id: int
    job_id: int
    program_sha256: str
    program_size: int
    input: bytes
    limits: JobLimits
    deadline: float


def grant_lease(
    conn: sqlite3.Connection,
    order_id: str,
    seller: str,
    limits: tuple[int, int],
    lease_seconds: float,
    now: float,
) -> Lease | None:
    """Lease the oldest job this order may take within (memory bytes, CPU seconds), or None."""
    job_id = ready_job(conn, order_id, limits)
    if job_id is None:
        return None
    cursor = conn.execute(
        "INSERT INTO leases (job_id, order_id, seller, state, created, deadline) "
        "VALUES (?, ?, ?, 'active', ?, ?)",
        (job_id, order_id, seller, now, now + lease_seconds),
    )
    take_slot(conn, job_id)
    program, size, data, cpu, wall, memory, output = conn.execute(
        "SELECT program, p.size, input, cpu_seconds, wall_seconds, memory_bytes, output_bytes "
        "FROM jobs JOIN programs p ON p.sha256 = jobs.program WHERE jobs.id = ?",
        (job_id,),
    ).fetchone()
    assert cursor.lastrowid is not None
    return Lease(
        id=cursor.lastrowid,
        job_id=job_id,
        program_sha256=program,
        program_size=size,
        input=bytes(data),
        limits=JobLimits(cpu, wall, memory, output),
        deadline=now + lease_seconds,
    )


def ready_job(conn: sqlite3.Connection, order_id: str, limits: tuple[int, int]) -> int | None:
    """The oldest job with a free slot that fits and that this order has not taken."""
    memory, cpu = limits
    row = conn.execute(
        """
        SELECT id FROM jobs
        WHERE state = 'open' AND slots > 0 AND memory_bytes <= ? AND cpu_seconds <= ?
          AND NOT EXISTS (SELECT 1 FROM leases l WHERE l.job_id = jobs.id
                          AND l.order_id = ? AND l.state != 'expired')
        ORDER BY id LIMIT 1
        """,
        (memory, cpu, order_id),
    ).fetchone()
    return None if row is None else int(row[0])


def expire_leases(conn: sqlite3.Connection, now: float) -> int:
    """Put the jobs of leases past their deadline back in the queue; return how many."""
    rows = conn.execute(
        "SELECT id, job_id FROM leases WHERE state = 'active' AND deadline < ?", (now,)
    ).fetchall()
    conn.executemany("UPDATE leases SET state = 'expired' WHERE id = ?", [(r[0],) for r in rows])
    for job_id in sorted({r[1] for r in rows}):
        refresh_slots(conn, job_id)
    return len(rows)


def own_lease(conn: sqlite3.Connection, lease_id: int, order_id: str) -> tuple[int, str, float]:
    row = conn.execute(
        "SELECT job_id, order_id, state, deadline FROM leases WHERE id = ?", (lease_id,)
    ).fetchone()
    if row is None:
        raise NotFound(f"no lease {lease_id}")
    if row[1] != order_id:
        raise Forbidden(f"lease {lease_id} belongs to another order")
    return int(row[0]), str(row[2]), float(row[3])


def extend_lease(
    conn: sqlite3.Connection, lease_id: int, order_id: str, lease_seconds: float, now: float
) -> float:
    """Push an active lease's deadline to now + lease_seconds; return the new deadline."""
    _, state, deadline = own_lease(conn, lease_id, order_id)
    if state == "done":
        raise Conflict(f"lease {lease_id} already has its result")
    if state == "expired" or deadline < now:
        raise Gone(f"lease {lease_id} expired and its job went back to the queue")
    conn.execute("UPDATE leases SET deadline = ? WHERE id = ?", (now + lease_seconds, lease_id))
    return now + lease_seconds


def release_lease(conn: sqlite3.Connection, lease_id: int, order_id: str, now: float) -> None:
    """Hand an active lease back: its job goes back to the queue now, not at its deadline."""
    job_id, state, deadline = own_lease(conn, lease_id, order_id)
    if state == "done":
        raise Conflict(f"lease {lease_id} already has its result")
    if state == "expired" or deadline < now:
        raise Gone(f"lease {lease_id} expired and its job went back to the queue")
    conn.execute(
        "UPDATE leases SET state = 'expired', deadline = ?, released = ? WHERE id = ?",
        (now, now, lease_id),
    )
    refresh_slots(conn, job_id)
