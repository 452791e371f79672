"""Agreement: a lease's result is stored, then its job judged against its replicas.

Agreement means the same outcome, exit status and output sha256, and counts distinct
networks (market.hosts.network_of), never orders or results: one machine, or one address
with many hosts, cannot agree with itself. A fixed job wants `replicas` of them; an
adaptive job wants two, except that the result of a lease handed to a trusted host as solo
(market.trust) stands alone when nothing disagrees with it. On acceptance the job's other
leases end, its sellers are paid from its reservation and the rest goes back to the buyer.
"""

from __future__ import annotations

import hashlib
import statistics
from dataclasses import dataclass

from market import ledger, trust
from market.dialect import Connection
from market.errors import Conflict, Gone, NotFound, TooLarge
from market.leasing import own_lease
from market.slots import refresh_slots, tally

# The median a result accepted alone is paid at most is taken over this many recent results
# of the program that were validated by agreement: enough that moving it takes a majority
# of them, few enough that every solo acceptance can afford to read them.
MEDIAN_WINDOW = 21


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
    """A stored result and where it stands: judged, and paid if accepted."""

    result_id: int
    verdict: str
    millicoins: int
    duplicate: bool


def record_result(
    conn: Connection, lease_id: int, host_id: str, result: ResultIn, now: float
) -> Recorded:
    """Store a lease's result and judge its job. Posting the same lease again is harmless."""
    job_id, state, deadline = own_lease(conn, lease_id, host_id)
    if state == "done":
        return _recorded(conn, lease_id, duplicate=True)
    if state == "expired" or deadline < now:
        raise Gone(f"lease {lease_id} expired and its job went back to the queue")
    output_cap, cpu_cap, program = conn.execute(
        "SELECT output_bytes, cpu_seconds, program FROM jobs WHERE id = ?", (job_id,)
    ).fetchone()
    if len(result.output) > output_cap:
        raise TooLarge(f"the output is larger than the job's limit of {output_cap} bytes")
    conn.execute("UPDATE leases SET state = 'done' WHERE id = ?", (lease_id,))
    conn.execute(
        """
        INSERT INTO results (lease_id, job_id, order_id, outcome, exit_status, output,
                             output_sha256, cpu_seconds, wall_seconds, detail, verdict, created,
                             host_id, network, solo, program)
        SELECT ?, ?, order_id, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, host_id, network, solo, ?
        FROM leases WHERE id = ?
        """,
        (
            lease_id,
            job_id,
            result.outcome,
            result.exit_status,
            result.output,
            hashlib.sha256(result.output).hexdigest(),
            min(max(result.cpu_seconds, 0.0), float(cpu_cap)),
            max(result.wall_seconds, 0.0),
            result.detail[:1000],
            now,
            program,
            lease_id,
        ),
    )
    judge(conn, job_id, now)
    return _recorded(conn, lease_id, duplicate=False)


def _recorded(conn: Connection, lease_id: int, duplicate: bool) -> Recorded:
    result_id, verdict = conn.execute(
        "SELECT id, verdict FROM results WHERE lease_id = ?", (lease_id,)
    ).fetchone()
    return Recorded(result_id, verdict, ledger.paid_millicoins(conn, result_id), duplicate)


_KEY = "outcome, exit_status, output_sha256"


def judge(conn: Connection, job_id: int, now: float) -> None:
    """Accept a job once enough distinct networks agree; fail it when that is out of reach."""
    state, replicas, max_results = conn.execute(
        "SELECT state, replicas, max_results FROM jobs WHERE id = ?", (job_id,)
    ).fetchone()
    if state != "open":
        _reject_pending(conn, job_id)
        return
    groups = conn.execute(
        f"SELECT {_KEY}, count(DISTINCT network) AS n, max(solo) FROM results "
        f"WHERE job_id = ? AND verdict = 'pending' GROUP BY {_KEY} ORDER BY n DESC",
        (job_id,),
    ).fetchall()
    if groups:
        best = groups[0]
        if best[3] >= replicas or (best[4] and len(groups) == 1):
            _accept(conn, job_id, best[:3], now)
            return
    slots = refresh_slots(conn, job_id)
    replicas_now = tally(conn, job_id)
    if slots == 0 and replicas_now.active == 0 and replicas_now.results >= max_results:
        _finish(conn, job_id, "failed", now)


def _accept(conn: Connection, job_id: int, key: tuple[object, ...], now: float) -> None:
    program = conn.execute("SELECT program FROM jobs WHERE id = ?", (job_id,)).fetchone()[0]
    rows = conn.execute(
        "SELECT r.id, r.host_id, r.network, r.cpu_seconds, o.account_id, "
        f"({_KEY}) IS NOT DISTINCT FROM (?, ?, ?) "
        "FROM results r JOIN orders o ON o.id = r.order_id "
        "WHERE r.job_id = ? AND r.verdict = 'pending'",
        (*key, job_id),
    ).fetchall()
    agreeing = [r for r in rows if r[5]]
    validated = len({r[2] for r in agreeing}) >= 2
    conn.executemany(
        "UPDATE results SET verdict = 'accepted', solo = ? WHERE id = ?",
        [(int(not validated), r[0]) for r in agreeing],
    )
    claim = min(r[3] for r in agreeing)
    if not validated:
        # One host's word: paid at most what the program usually takes, never its own claim.
        median = _median_cpu(conn, program)
        claim = claim if median is None else min(claim, median)
    for result_id, _, _, _, account_id, _ in agreeing:
        ledger.pay(conn, job_id, result_id, account_id, max(1, round(1000 * claim)), now)
    trust.judged(
        conn,
        program,
        [r[1] for r in agreeing if validated and r[1] is not None],
        [r[1] for r in rows if not r[5] and r[1] is not None],
    )
    conn.execute(
        "UPDATE jobs SET outcome = ?, exit_status = ?, output_sha256 = ? WHERE id = ?",
        (*key, job_id),
    )
    _finish(conn, job_id, "done", now)


def _median_cpu(conn: Connection, program: str) -> float | None:
    """The median CPU time of the program's recent results validated by agreement."""
    rows = conn.execute(
        "SELECT cpu_seconds FROM results WHERE program = ? AND verdict = 'accepted' "
        "AND solo = 0 ORDER BY id DESC LIMIT ?",
        (program, MEDIAN_WINDOW),
    ).fetchall()
    return statistics.median_low(r[0] for r in rows) if rows else None


def _finish(conn: Connection, job_id: int, state: str, now: float) -> None:
    """End a job: its other leases end too (a late result finds them gone), its pending
    results are rejected and what is left of its reservation goes back to the buyer."""
    conn.execute(
        "UPDATE jobs SET state = ?, finished = ?, slots = 0 WHERE id = ?", (state, now, job_id)
    )
    conn.execute(
        "UPDATE leases SET state = 'expired', released = ? WHERE job_id = ? AND state = 'active'",
        (now, job_id),
    )
    _reject_pending(conn, job_id)
    ledger.refund(conn, job_id, now)


def cancel(conn: Connection, account_id: int, job_id: int, now: float) -> None:
    """The buyer withdraws an open job: its reservation comes back whole."""
    row = conn.execute(
        "SELECT state FROM jobs WHERE id = ? AND account_id = ?", (job_id, account_id)
    ).fetchone()
    if row is None:
        raise NotFound(f"no job {job_id} in your account")
    if row[0] != "open":
        raise Conflict(f"job {job_id} is {row[0]}: only an open job can be cancelled")
    conn.execute("UPDATE jobs SET cancelled = ? WHERE id = ?", (now, job_id))
    _finish(conn, job_id, "failed", now)


def _reject_pending(conn: Connection, job_id: int) -> None:
    conn.execute(
        "UPDATE results SET verdict = 'rejected' WHERE job_id = ? AND verdict = 'pending'",
        (job_id,),
    )
