"""Agreement: a lease's result is stored, then its job judged against its replicas.

A job wants `replicas` agreeing results from distinct orders. Agreement means the same
outcome, exit status and output sha256. Accepted results are credited by the ledger.
"""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass

from market import ledger
from market.errors import Gone, TooLarge
from market.leasing import own_lease
from market.slots import refresh_slots, tally


@dataclass(frozen=True)
class ResultIn:
    """What a seller reports for a lease."""

    outcome: str
    exit_status: int | None
    output: bytes
    cpu_seconds: float
    wall_seconds: float
    detail: str


@dataclass(frozen=True)
class Recorded:
    """A stored result and where it stands: judged, and credited if accepted."""

    result_id: int
    verdict: str
    millicoins: int
    duplicate: bool


def record_result(
    conn: sqlite3.Connection, lease_id: int, order_id: str, result: ResultIn, now: float
) -> Recorded:
    """Store a lease's result and judge its job. Posting the same lease again is harmless."""
    job_id, state, deadline = own_lease(conn, lease_id, order_id)
    if state == "done":
        return _recorded(conn, lease_id, duplicate=True)
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
    return _recorded(conn, lease_id, duplicate=False)


def _recorded(conn: sqlite3.Connection, lease_id: int, duplicate: bool) -> Recorded:
    result_id, verdict = conn.execute(
        "SELECT id, verdict FROM results WHERE lease_id = ?", (lease_id,)
    ).fetchone()
    return Recorded(result_id, verdict, ledger.credited_millicoins(conn, result_id), duplicate)


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
    replicas_now = tally(conn, job_id)
    if slots == 0 and replicas_now.active == 0 and replicas_now.results >= max_results:
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
        ledger.credit(conn, result_id)
    _reject_pending(conn, job_id)


def _reject_pending(conn: sqlite3.Connection, job_id: int) -> None:
    conn.execute(
        "UPDATE results SET verdict = 'rejected' WHERE job_id = ? AND verdict = 'pending'",
        (job_id,),
    )
