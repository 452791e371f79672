"""Sellers' side of the store: leases with deadlines, results, agreement and credits.

A job wants `replicas` agreeing results from distinct orders. Agreement means the same
outcome, exit status and output sha256. `jobs.slots` caches how many more leases the job
may hand out now, so the lease query is one indexed lookup; every change to a job's leases
or results recomputes it. Credits go into the ledger, whose unique result_id makes
crediting idempotent whatever path reaches it twice.
"""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass

from market.errors import Conflict, Forbidden, Gone, NotFound, TooLarge
from market.jobs import JobLimits


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


@dataclass(frozen=True)
class ResultIn:
    """What a seller reports for a lease."""

    outcome: str
    exit_status: int | None
    output: bytes
    cpu_seconds: float
    wall_seconds: float
    detail: str


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
    # One more active lease lowers both bounds of refresh_slots() by one.
    conn.execute("UPDATE jobs SET slots = slots - 1 WHERE id = ?", (job_id,))
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


def refresh_slots(conn: sqlite3.Connection, job_id: int) -> int:
    """Recompute how many more leases the job may hand out now; return it."""
    state, replicas, max_results = conn.execute(
        "SELECT state, replicas, max_results FROM jobs WHERE id = ?", (job_id,)
    ).fetchone()
    slots = 0
    if state == "open":
        active = _count(
            conn, "SELECT count(*) FROM leases WHERE job_id = ? AND state = 'active'", job_id
        )
        total = _count(conn, "SELECT count(*) FROM results WHERE job_id = ?", job_id)
        best = _count(
            conn,
            "SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM results "
            "WHERE job_id = ? AND verdict = 'pending' "
            "GROUP BY outcome, exit_status, output_sha256)",
            job_id,
        )
        slots = max(0, min(replicas - best - active, max_results - total - active))
    conn.execute("UPDATE jobs SET slots = ? WHERE id = ?", (slots, job_id))
    return slots


def _count(conn: sqlite3.Connection, sql: str, job_id: int) -> int:
    return int(conn.execute(sql, (job_id,)).fetchone()[0])


def expire_leases(conn: sqlite3.Connection, now: float) -> int:
    """Put the jobs of leases past their deadline back in the queue; return how many."""
    rows = conn.execute(
        "SELECT id, job_id FROM leases WHERE state = 'active' AND deadline < ?", (now,)
    ).fetchall()
    conn.executemany("UPDATE leases SET state = 'expired' WHERE id = ?", [(r[0],) for r in rows])
    for job_id in sorted({r[1] for r in rows}):
        refresh_slots(conn, job_id)
    return len(rows)


def _own_lease(conn: sqlite3.Connection, lease_id: int, order_id: str) -> tuple[int, str, float]:
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
    _, state, deadline = _own_lease(conn, lease_id, order_id)
    if state == "done":
        raise Conflict(f"lease {lease_id} already has its result")
    if state == "expired" or deadline < now:
        raise Gone(f"lease {lease_id} expired and its job went back to the queue")
    conn.execute("UPDATE leases SET deadline = ? WHERE id = ?", (now + lease_seconds, lease_id))
    return now + lease_seconds


def release_lease(conn: sqlite3.Connection, lease_id: int, order_id: str, now: float) -> None:
    """Hand an active lease back: its job goes back to the queue now, not at its deadline."""
    job_id, state, deadline = _own_lease(conn, lease_id, order_id)
    if state == "done":
        raise Conflict(f"lease {lease_id} already has its result")
    if state == "expired" or deadline < now:
        raise Gone(f"lease {lease_id} expired and its job went back to the queue")
    conn.execute(
        "UPDATE leases SET state = 'expired', deadline = ?, released = ? WHERE id = ?",
        (now, now, lease_id),
    )
    refresh_slots(conn, job_id)


def record_result(
    conn: sqlite3.Connection, lease_id: int, order_id: str, result: ResultIn, now: float
) -> dict[str, object]:
    """Store a lease's result and judge its job. Posting the same lease again is harmless."""
    job_id, state, deadline = _own_lease(conn, lease_id, order_id)
    if state == "done":
        return _result_reply(conn, lease_id, duplicate=True)
    if state == "expired" or deadline < now:
        raise Gone(f"lease {lease_id} expired and its job went back to the queue")
    output_cap, cpu_cap = conn.execute(
        "SELECT output_bytes, cpu_seconds FROM jobs WHERE id = ?", (job_id,)
    ).fetchone()
    if len(result.output) > output_cap:
        raise TooLarge(f"the output is larger than the job's limit of {output_cap} bytes")
    conn.execute("UPDATE leases SET state = 'done' WHERE id = ?", (lease_id,))
    conn.execute(
        """
        INSERT INTO results (lease_id, job_id, order_id, outcome, exit_status, output,
                             output_sha256, cpu_seconds, wall_seconds, detail, verdict, created)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?)
        """,
        (
            lease_id,
            job_id,
            order_id,
            result.outcome,
            result.exit_status,
            result.output,
            hashlib.sha256(result.output).hexdigest(),
            min(max(result.cpu_seconds, 0.0), float(cpu_cap)),
            max(result.wall_seconds, 0.0),
            result.detail[:1000],
            now,
        ),
    )
    judge(conn, job_id, now)
    return _result_reply(conn, lease_id, duplicate=False)


def _result_reply(conn: sqlite3.Connection, lease_id: int, duplicate: bool) -> dict[str, object]:
    result_id, verdict, millicoins = conn.execute(
        "SELECT r.id, r.verdict, coalesce(l.millicoins, 0) FROM results r "
        "LEFT JOIN ledger l ON l.result_id = r.id WHERE r.lease_id = ?",
        (lease_id,),
    ).fetchone()
    return {
        "result": result_id,
        "verdict": verdict,
        "coins": millicoins / 1000,
        "duplicate": duplicate,
    }


_KEY = "outcome, exit_status, output_sha256"


def judge(conn: sqlite3.Connection, job_id: int, now: float) -> None:
    """Accept a job once `replicas` results agree; fail it when agreement is out of reach."""
    state, replicas, max_results = conn.execute(
        "SELECT state, replicas, max_results FROM jobs WHERE id = ?", (job_id,)
    ).fetchone()
    if state == "done":
        _judge_late(conn, job_id)
        return
    if state == "failed":
        _reject_pending(conn, job_id)
        return
    best = conn.execute(
        f"SELECT {_KEY}, count(*) AS n FROM results WHERE job_id = ? AND verdict = 'pending' "
        f"GROUP BY {_KEY} ORDER BY n DESC LIMIT 1",
        (job_id,),
    ).fetchone()
    if best is not None and best[3] >= replicas:
        _accept(conn, job_id, best[:3], now)
        return
    slots = refresh_slots(conn, job_id)
    total = _count(conn, "SELECT count(*) FROM results WHERE job_id = ?", job_id)
    active = _count(
        conn, "SELECT count(*) FROM leases WHERE job_id = ? AND state = 'active'", job_id
    )
    if slots == 0 and active == 0 and total >= max_results:
        conn.execute(
            "UPDATE jobs SET state = 'failed', finished = ?, slots = 0 WHERE id = ?", (now, job_id)
        )
        _reject_pending(conn, job_id)


def _accept(conn: sqlite3.Connection, job_id: int, key: tuple[object, ...], now: float) -> None:
    conn.execute(
        "UPDATE jobs SET state = 'done', outcome = ?, exit_status = ?, output_sha256 = ?, "
        "finished = ?, slots = 0 WHERE id = ?",
        (*key, now, job_id),
    )
    _judge_late(conn, job_id)


def _judge_late(conn: sqlite3.Connection, job_id: int) -> None:
    """Settle pending results of a finished job: those agreeing with it are accepted too."""
    agreeing = conn.execute(
        "SELECT r.id FROM results r JOIN jobs j ON j.id = r.job_id WHERE r.job_id = ? "
        "AND r.verdict = 'pending' AND r.outcome = j.outcome "
        "AND r.exit_status IS j.exit_status AND r.output_sha256 = j.output_sha256",
        (job_id,),
    ).fetchall()
    conn.executemany("UPDATE results SET verdict = 'accepted' WHERE id = ?", agreeing)
    for (result_id,) in agreeing:
        credit(conn, result_id)
    _reject_pending(conn, job_id)


def _reject_pending(conn: sqlite3.Connection, job_id: int) -> None:
    conn.execute(
        "UPDATE results SET verdict = 'rejected' WHERE job_id = ? AND verdict = 'pending'",
        (job_id,),
    )


def credit(conn: sqlite3.Connection, result_id: int) -> None:
    """Credit an accepted result's order account with CPUCoins, once.

    One coin is one CPU second. Every agreeing result earns the smallest CPU time claimed
    among them, so a seller gains nothing by inflating its own claim.
    """
    conn.execute(
        """
        INSERT INTO ledger (result_id, account_id, order_id, millicoins, created)
        SELECT r.id, o.account_id, r.order_id,
               max(1, CAST(round(1000 * (SELECT min(a.cpu_seconds) FROM results a
                                         WHERE a.job_id = r.job_id AND a.verdict = 'accepted'))
                           AS INTEGER)),
               r.created
        FROM results r JOIN orders o ON o.id = r.order_id
        WHERE r.id = ? AND r.verdict = 'accepted'
        ON CONFLICT (result_id) DO NOTHING
        """,
        (result_id,),
    )
