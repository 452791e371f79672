"""The slot cache: how many more leases a job may hand out now.

`jobs.slots` makes the lease query one indexed lookup. It depends on the job's active
leases and on its results alike, so every change to either recomputes it here.
"""

from __future__ import annotations

from dataclasses import dataclass

from market.dialect import Connection


@dataclass(frozen=True)
class Tally:
    """Where a job's replicas stand."""

    active: int  # leases out now
    results: int  # results stored, judged or not
    agreeing: int  # the most distinct networks among pending results that agree
    solo: bool  # a lease out now whose result will stand alone (adaptive replication)


def tally(conn: Connection, job_id: int) -> Tally:
    def count(sql: str) -> int:
        return int(conn.execute(sql, (job_id,)).fetchone()[0])

    return Tally(
        active=count("SELECT count(*) FROM leases WHERE job_id = ? AND state = 'active'"),
        results=count("SELECT count(*) FROM results WHERE job_id = ?"),
        agreeing=count(
            "SELECT coalesce(max(n), 0) FROM (SELECT count(DISTINCT network) AS n FROM results "
            "WHERE job_id = ? AND verdict = 'pending' "
            "GROUP BY outcome, exit_status, output_sha256) AS groups"
        ),
        solo=bool(
            count("SELECT count(*) FROM leases WHERE job_id = ? AND state = 'active' AND solo = 1")
        ),
    )


def refresh_slots(conn: Connection, job_id: int) -> int:
    """Recompute how many more leases the job may hand out now; return it."""
    state, replicas, max_results = conn.execute(
        "SELECT state, replicas, max_results FROM jobs WHERE id = ?", (job_id,)
    ).fetchone()
    slots = 0
    out = tally(conn, job_id) if state == "open" else None
    if out is not None and not out.solo:
        slots = max(
            0, min(replicas - out.agreeing - out.active, max_results - out.results - out.active)
        )
    conn.execute("UPDATE jobs SET slots = ? WHERE id = ?", (slots, job_id))
    return slots


def take_slot(conn: Connection, job_id: int) -> None:
    """Count one more active lease: it lowers both bounds of refresh_slots() by one."""
    conn.execute("UPDATE jobs SET slots = slots - 1 WHERE id = ?", (job_id,))
