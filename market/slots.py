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


# One statement for the whole tally: it is read after every result that does not end its job.
# Active leases counted by FILTER among the job's leases, as in market.agreement's read of a
# lease and its job: never through the index of every active lease (leases_deadline).
_TALLY = """
    SELECT (SELECT count(*) FILTER (WHERE state = 'active') FROM leases WHERE job_id = ?),
           (SELECT count(*) FROM results WHERE job_id = ?),
           (SELECT coalesce(max(n), 0) FROM (SELECT count(DISTINCT network) AS n FROM results
            WHERE job_id = ? AND verdict = 'pending'
            GROUP BY outcome, exit_status, output_sha256) AS groups),
           (SELECT count(*) FILTER (WHERE state = 'active' AND solo = 1) FROM leases
            WHERE job_id = ?)
"""


def tally(conn: Connection, job_id: int) -> Tally:
    active, results, agreeing, solo = conn.execute(_TALLY, (job_id,) * 4).fetchone()
    return Tally(int(active), int(results), int(agreeing), bool(solo))


def refresh_slots(conn: Connection, job_id: int) -> int:
    """Recompute how many more leases the job may hand out now; return it."""
    state, replicas, max_results = conn.execute(
        "SELECT state, replicas, max_results FROM jobs WHERE id = ?", (job_id,)
    ).fetchone()
    out = tally(conn, job_id) if state == "open" else None
    return update_slots(conn, job_id, replicas, max_results, out)


def update_slots(
    conn: Connection, job_id: int, replicas: int, max_results: int, out: Tally | None
) -> int:
    """Store the slots of a job with `replicas` and `max_results` whose tally is `out`
    (None: the job is not open); return them."""
    slots = 0
    if out is not None and not out.solo:
        slots = max(
            0, min(replicas - out.agreeing - out.active, max_results - out.results - out.active)
        )
    conn.execute("UPDATE jobs SET slots = ? WHERE id = ?", (slots, job_id))
    return slots
