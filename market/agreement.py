"""Agreement: a lease's result is stored, then its job judged against its replicas.

Agreement means the same outcome, exit status and output sha256, and counts distinct
networks (market.hosts.network_of), never orders or results: one machine, or one address
with many hosts, cannot agree with itself. A fixed job wants `replicas` of them; an
adaptive job wants two, except that the result of a lease handed to a trusted host as solo
(market.trust) stands alone when nothing disagrees with it. On acceptance the job's other
leases end, its sellers are paid from its reservation and the rest goes back to the buyer.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any, NamedTuple

from market import later, ledger, trust
from market.dialect import Connection, is_postgres
from market.errors import (
    Conflict,
    Forbidden,
    Gone,
    MarketError,
    NotFound,
    TooLarge,
    Unavailable,
)
from market.later import Later
from market.slots import tally, update_slots

# The median a result accepted alone is paid at most is taken over this many recent results
# of the program that were validated by agreement: enough that moving it takes a majority
# of them, few enough that every solo acceptance can afford to read them.
MEDIAN_WINDOW = 21


class ResultIn(NamedTuple):
    """What a seller reports for a lease. (Named tuples, here and below: each result makes
    one of each, and a frozen dataclass costs three times as much to make.)"""

    outcome: str
    exit_status: int | None
    output: bytes
    cpu_seconds: float
    wall_seconds: float
    detail: str


class Recorded(NamedTuple):
    """A stored result and where it stands: judged, and paid if accepted."""

    result_id: int
    verdict: str
    millicoins: int
    duplicate: bool


class _Job(NamedTuple):
    """The job row a result is judged against, read once with its lease."""

    id: int
    account_id: int
    program: str
    state: str
    replicas: int
    max_results: int
    reserved: int
    other_leases: int  # active leases of the job besides the one whose result this is
    median: float | None  # what a result accepted on one host's word is paid at most


# The median CPU time of a program over its recent results validated by agreement
# (statistics.median_low), for jobs whose result may be accepted on one host's word: a job
# of one replica, or an adaptive job (market.trust) leased solo. {program}: the column.
_PROGRAM_MEDIAN = f"""(
        SELECT cpu_seconds FROM (
            SELECT cpu_seconds, row_number() OVER (ORDER BY cpu_seconds) AS k,
                   count(*) OVER () AS n
            FROM (SELECT cpu_seconds FROM results m
                  WHERE m.program = {{program}} AND m.verdict = 'accepted' AND m.solo = 0
                  ORDER BY m.id DESC LIMIT {MEDIAN_WINDOW}) AS recent
        ) AS ranked WHERE k = (n + 1) / 2
    )"""
_ALONE_MAY = "j.replicas = 1 OR j.adaptive = 1"
_MEDIAN = f"CASE WHEN {_ALONE_MAY} THEN {_PROGRAM_MEDIAN.format(program='j.program')} END"

# One read for the lease, its job, the job's other active leases and its program's median:
# each statement costs a round trip and a parse on PostgreSQL, and a result is the market's
# most frequent write. The job's active leases are counted among all its leases (a FILTER,
# not a WHERE): with `state = 'active'` in the WHERE, PostgreSQL could take the index of
# the active leases by deadline (leases_deadline) after statistics read while few were
# active, and then read every active lease of the market, and the entries of those that
# ended since the last VACUUM, for each lease (4,036 entries for one, 4 loops of 0.145 ms).
_LEASE_AND_JOB = f"""
    SELECT l.job_id, l.host_id, l.state, l.deadline, j.output_bytes, j.cpu_seconds, j.program,
           j.account_id, j.state, j.replicas, j.max_results, j.reserved,
           (SELECT count(*) FILTER (WHERE a.state = 'active') FROM leases a
            WHERE a.job_id = l.job_id),
           (SELECT count(*) FROM results r WHERE r.job_id = l.job_id AND r.verdict = 'pending'),
           o.account_id, {_MEDIAN}, l.network, l.solo, l.id, l.order_id
    FROM leases l JOIN jobs j ON j.id = l.job_id JOIN orders o ON o.id = l.order_id
    WHERE l.id = ?
"""


@functools.cache
def _leases_and_jobs(count: int, once: bool) -> str:
    """_LEASE_AND_JOB for `count` leases at once (a statement per count, each prepared).
    `once` (SQLite): instead of each lease's program median, 1 where a result may be
    accepted on one host's word (NULL elsewhere), each program's median then read once
    (_MEDIAN_OF, _medians). Per lease, the statement read and ranked up to MEDIAN_WINDOW
    results again (SQLite: 18 us a lease with them there); a median worked out in the
    statement (a CTE joined to each lease) still cost 2.2 us a lease of the 5.3 the
    statement took, against some 7 us a program apart. PostgreSQL's generic plan of the
    CTE was slower where no result was validated yet (92-139 us a lease against 56-80)
    and no faster otherwise."""
    leases = _LEASE_AND_JOB.replace("l.id = ?", f"l.id IN ({', '.join('?' * count)})")
    if not once:
        return leases
    return leases.replace(_MEDIAN, f"CASE WHEN {_ALONE_MAY} THEN 1 END")


# A program's median (_PROGRAM_MEDIAN), on its own.
_MEDIAN_OF = f"SELECT {_PROGRAM_MEDIAN.format(program='?')}"


def _medians(conn: Connection, rows: Any) -> dict[str, float | None]:
    """{program: median} of the programs of the rows _leases_and_jobs read `once` whose
    results may be accepted on one host's word."""
    programs = {row[6] for row in rows if row[15] is not None}
    return {program: conn.execute(_MEDIAN_OF, (program,)).fetchone()[0] for program in programs}


def record_result(
    conn: Connection, lease_id: int, host_id: str, result: ResultIn, now: float
) -> Recorded:
    """Store a lease's result and judge its job (record_many_checked for one result; a
    refusal raised). Posting the same lease again is harmless."""
    alone = _record(conn, [(host_id, lease_id, result)], now)
    refused = alone.recorded[0]
    if isinstance(refused, MarketError):
        raise refused
    recorded = alone.read()[0]
    assert isinstance(recorded, Recorded)
    return recorded


def record_many_checked(
    conn: Connection, results: list[tuple[str, int, ResultIn]], now: float
) -> tuple[Later[list[Recorded | MarketError]], list[MarketError | None]]:
    """record_result for each (host, lease, result), in one operation of the store (the
    single results posted at once, market.gather, or a host's batch): their answers read
    Later (market.later), and at once each result's refusal (None: recorded), for an
    operation that goes on to lease on the seats whose results were kept (market.posting).

    A result refused (an unknown or expired lease, say) is refused before anything of it
    is written, and is answered with its error while the others are kept. Their leases and
    jobs are read in one statement; one whose job an earlier result of the request changed
    (the same lease posted twice, say), or whose program's median it may have moved (an
    acceptance by agreement), is read again.

    The results accepted on their own (_alone) are written together, a statement per table
    for all of them (_accept_alone), as late as the others allow: before anything reads
    what they change and before any other result is stored, so every row and id comes out
    as if each result had been recorded in turn."""
    alone = _record(conn, results, now)
    refusals = [answer if isinstance(answer, MarketError) else None for answer in alone.recorded]
    return Later(alone.read), refusals


def _record(conn: Connection, results: list[tuple[str, int, ResultIn]], now: float) -> _Alone:
    """record_many_checked()'s work: its answers, those of the results accepted alone
    still to be read."""
    leases = sorted({lease_id for _, lease_id, _ in results})
    once = not is_postgres(conn)
    reading = conn.execute(_leases_and_jobs(len(leases), once), leases)
    rows = {row[18]: row for row in reading}
    medians = _medians(conn, rows.values()) if once else None
    changed: set[int] = set()
    programs: set[str] = set()
    recorded: list[Recorded | MarketError | None] = []
    alone = _Alone(recorded)
    for host_id, lease_id, result in results:
        row = rows.get(lease_id)
        if row is not None and (row[0] in changed or row[6] in programs):
            alone.write(conn, now)
            row = conn.execute(_LEASE_AND_JOB, (lease_id,)).fetchone()
            read_alone = None  # the row holds its own median
        else:
            read_alone = medians
        try:
            checked = _check(conn, lease_id, host_id, result, now, row, read_alone)
        except Unavailable:
            raise  # the database's, not the result's: the whole request is answered 503
        except MarketError as exc:
            recorded.append(exc)
            continue
        if not isinstance(checked, Recorded):
            read, job = checked
            changed.add(job.id)
            if _alone(read, job):
                alone.add(lease_id, result, read, job)
                continue
            alone.write(conn, now)
            checked = _store(conn, lease_id, result, now, read, job)
            if checked.verdict == "accepted" and read[13]:
                # Accepted beside other results: perhaps by agreement, which the median counts.
                programs.add(job.program)
        recorded.append(checked)
    alone.write(conn, now)
    return alone


def _check(
    conn: Connection,
    lease_id: int,
    host_id: str,
    result: ResultIn,
    now: float,
    row: Any,
    medians: dict[str, float | None] | None = None,
) -> Recorded | tuple[Any, _Job]:
    """The lease's row and job (as _LEASE_AND_JOB reads them; None for no such lease) if
    the result may be stored (raising why not, before anything is written); what is
    recorded already for a lease posted again. `medians`: the programs' medians, for a row
    _leases_and_jobs read `once` (which holds a mark in their place)."""
    if row is None:
        raise NotFound(f"no lease {lease_id}")
    job_id, owner, state, deadline, output_cap, _, program = row[:7]
    if owner != host_id:
        raise Forbidden(f"lease {lease_id} belongs to another host")
    if state == "done":
        return _recorded(conn, lease_id, duplicate=True)
    if state == "expired" or deadline < now:
        raise Gone(f"lease {lease_id} expired and its job went back to the queue")
    if len(result.output) > output_cap:
        raise TooLarge(f"the output is larger than the job's limit of {output_cap} bytes")
    median = row[15] if medians is None or row[15] is None else medians[program]
    job = _Job(job_id, row[7], program, row[8], row[9], row[10], int(row[11]), row[12] - 1, median)
    return row, job


def _alone(row: Any, job: _Job) -> bool:
    """Whether the result checked by _check is its job's only one and is accepted on one
    host's word: stored accepted at once (as _judge and _accept would leave it: solo, since
    no second network validated it), with nothing more to read or judge."""
    return (
        row[13] == 0
        and job.state == "open"
        and (bool(row[17]) or (row[16] is not None and job.replicas <= 1))
    )


def _output_fields(
    result: ResultIn, cpu_cap: float
) -> tuple[str, int | None, bytes, str, float, float, str]:
    """A result's columns from its outcome to its detail, as they are stored."""
    return (
        result.outcome,
        result.exit_status,
        result.output,
        hashlib.sha256(result.output).hexdigest(),
        min(max(result.cpu_seconds, 0.0), float(cpu_cap)),
        max(result.wall_seconds, 0.0),
        result.detail[:1000],
    )


class _Alone:
    """Results accepted on their own (_alone), held until `write` stores them all at once;
    each one's answer goes into `recorded` at the place it held when added, once `read`."""

    def __init__(self, recorded: list[Recorded | MarketError | None]) -> None:
        self.recorded = recorded
        self.held: list[tuple[int, int, ResultIn, Any, _Job]] = []
        self.written: list[tuple[list[int], Later[list[Recorded]]]] = []

    def add(self, lease_id: int, result: ResultIn, row: Any, job: _Job) -> None:
        self.held.append((len(self.recorded), lease_id, result, row, job))
        self.recorded.append(None)

    def write(self, conn: Connection, now: float) -> None:
        if not self.held:
            return
        held, self.held = self.held, []
        answers = _accept_alone(
            conn, [(lease, result, row, job) for _, lease, result, row, job in held], now
        )
        self.written.append(([place for place, *_ in held], answers))

    def read(self) -> list[Recorded | MarketError]:
        """`recorded`, the answers of the results written filled in."""
        for places, answers in self.written:
            for place, answer in zip(places, answers.value(), strict=True):
                self.recorded[place] = answer
        return [answer for answer in self.recorded if answer is not None]


def _accept_alone(
    conn: Connection, accepted: list[tuple[int, ResultIn, Any, _Job]], now: float
) -> Later[list[Recorded]]:
    """Store results that _alone accepts, each the only result of its own job, and end
    their jobs: what _store, _accept and _end_job do for each, a statement per table for
    all of them (their leases done, the results, the ledger's transfers and balances
    (ledger.settle_all), the jobs, and any other leases of theirs). Nothing here waits for
    the server: on PostgreSQL the transfers name their results by lease, and the results'
    ids are read Later (market.later); SQLite has them at once, and the transfers name
    them (no lookup of each by its lease)."""
    conn.execute(_leases_done(len(accepted)), [lease_id for lease_id, *_ in accepted])
    # (outcome, exit status, output, sha256, CPU seconds, wall seconds, detail) of each.
    fields = [_output_fields(result, row[5]) for _, result, row, _ in accepted]
    values: list[object] = []
    for (lease_id, _, row, job), stored in zip(accepted, fields, strict=True):
        values += (lease_id, job.id, row[19], *stored, now, row[1], row[16], job.program)
    insert = conn.execute(_insert_accepted(len(accepted)), values)
    inserted = later.rows(conn, insert)
    known = None if is_postgres(conn) else _result_ids(inserted.value())
    settlements: list[ledger.Settlement] = []
    ended: list[tuple[_Job, tuple[object, ...]]] = []
    refs: list[ledger.ResultRef] = []
    for (lease_id, _, row, job), stored in zip(accepted, fields, strict=True):
        # One host's word: paid at most what the program usually takes, never its own claim.
        claim = stored[4] if job.median is None else min(stored[4], job.median)
        amount = max(1, round(1000 * claim))
        ref = ledger.ResultOf(lease_id) if known is None else known[lease_id]
        refs.append(ref)
        settlements.append(
            ledger.Settlement(job.id, job.account_id, job.reserved, [(ref, row[14], amount)])
        )
        ended.append((job, (stored[0], stored[1], stored[3])))
    paid = ledger.settle_all(conn, settlements, now)
    _end_jobs(conn, ended, "done", now)

    def recorded() -> list[Recorded]:
        result_of = _result_ids(inserted.value()) if known is None else known
        return [
            Recorded(result_of[lease_id], "accepted", paid[ref], duplicate=False)
            for (lease_id, *_), ref in zip(accepted, refs, strict=True)
        ]

    return Later(recorded)


@functools.cache
def _leases_done(count: int) -> str:
    """_accept_alone's UPDATE of `count` leases (a text made once per count)."""
    return f"UPDATE leases SET state = 'done' WHERE id IN ({', '.join(['?'] * count)})"


@functools.cache
def _insert_accepted(count: int) -> str:
    """_accept_alone's INSERT of `count` results."""
    return (
        "INSERT INTO results (lease_id, job_id, order_id, outcome, exit_status, output, "
        "output_sha256, cpu_seconds, wall_seconds, detail, created, host_id, network, program, "
        "verdict, solo) VALUES "
        + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'accepted', 1)"] * count)
        + " RETURNING lease_id, id"
    )


def _result_ids(rows: list[Any]) -> dict[int, int]:
    """{lease: result} of the (lease, result id) rows the results' INSERT returned."""
    return {int(lease_id): int(result_id) for lease_id, result_id in rows}


def _store(
    conn: Connection, lease_id: int, result: ResultIn, now: float, row: Any, job: _Job
) -> Recorded:
    """Store the result checked by _check (one that _alone does not accept) and judge its
    job."""
    conn.execute("UPDATE leases SET state = 'done' WHERE id = ?", (lease_id,))
    stored = conn.execute(
        _INSERT_PENDING,
        (lease_id, job.id, *_output_fields(result, row[5]), now, job.program, lease_id),
    ).fetchone()
    result_id = stored[0]
    # The job's first pending result needs no read to be judged: it is the one just stored.
    first = None if row[13] else [(*stored[:4], row[14], *stored[4:])]
    ended, paid = _judge(conn, job, now, first)
    if result_id in paid:
        return Recorded(result_id, "accepted", paid[result_id], duplicate=False)
    return Recorded(result_id, "rejected" if ended else "pending", 0, duplicate=False)


_INSERT_PENDING = """
    INSERT INTO results (lease_id, job_id, order_id, outcome, exit_status, output,
                         output_sha256, cpu_seconds, wall_seconds, detail, verdict, created,
                         host_id, network, solo, program)
    SELECT ?, ?, order_id, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, host_id, network, solo, ?
    FROM leases WHERE id = ?
    RETURNING id, host_id, network, cpu_seconds, solo, outcome, exit_status, output_sha256
"""


def _recorded(conn: Connection, lease_id: int, duplicate: bool) -> Recorded:
    result_id, verdict = conn.execute(
        "SELECT id, verdict FROM results WHERE lease_id = ?", (lease_id,)
    ).fetchone()
    return Recorded(result_id, verdict, ledger.paid_millicoins(conn, result_id), duplicate)


_KEY = "outcome, exit_status, output_sha256"
# A pending result: (id, host, network, cpu seconds, seller's account, solo, *key).
_PENDING = (
    "SELECT r.id, r.host_id, r.network, r.cpu_seconds, o.account_id, r.solo, "
    "r.outcome, r.exit_status, r.output_sha256 "
    "FROM results r JOIN orders o ON o.id = r.order_id "
    "WHERE r.job_id = ? AND r.verdict = 'pending'"
)


def _judge(
    conn: Connection, job: _Job, now: float, pending: list[Any] | None
) -> tuple[bool, dict[ledger.ResultRef, int]]:
    """Accept a job once enough distinct networks agree; fail it when that is out of reach.
    `pending` are its pending results as _PENDING reads them, if the caller knows them.

    Returns whether the job ended (its pending results are then rejected) and the
    millicoins paid to each accepted result.
    """
    if job.state != "open":
        _reject_pending(conn, job.id)
        return True, {}
    rows = conn.execute(_PENDING, (job.id,)).fetchall() if pending is None else pending
    # Grouped here rather than in SQL: the same rows are the ones accepted and paid below.
    networks: dict[tuple[object, ...], set[object]] = {}
    solo: dict[tuple[object, ...], bool] = {}
    for r in rows:
        key = tuple(r[6:])
        networks.setdefault(key, set())
        if r[2] is not None:
            networks[key].add(r[2])
        solo[key] = solo.get(key, False) or bool(r[5])
    if networks:
        best = max(networks, key=lambda k: len(networks[k]))
        if len(networks[best]) >= job.replicas or (solo[best] and len(networks) == 1):
            return True, _accept(conn, job, rows, best, now)
    replicas_now = tally(conn, job.id)
    slots = update_slots(conn, job.id, job.replicas, job.max_results, replicas_now)
    if slots == 0 and replicas_now.active == 0 and replicas_now.results >= job.max_results:
        _finish(conn, job, "failed", now)
        return True, {}
    return False, {}


def _accept(
    conn: Connection,
    job: _Job,
    rows: list[Any],
    key: tuple[object, ...],
    now: float,
) -> dict[ledger.ResultRef, int]:
    """Accept the results of `rows` that agree on `key` and reject the rest."""
    agreeing = [r for r in rows if tuple(r[6:]) == key]
    validated = len({r[2] for r in agreeing}) >= 2
    claim = min(r[3] for r in agreeing)
    if not validated and job.median is not None:
        # One host's word: paid at most what the program usually takes, never its own claim.
        claim = min(claim, job.median)
    # The agreeing results are accepted and the others rejected in one statement.
    conn.execute(
        f"UPDATE results SET verdict = CASE WHEN ({_KEY}) IS NOT DISTINCT FROM (?, ?, ?) "
        "THEN 'accepted' ELSE 'rejected' END, "
        f"solo = CASE WHEN ({_KEY}) IS NOT DISTINCT FROM (?, ?, ?) THEN ? ELSE solo END "
        "WHERE job_id = ? AND verdict = 'pending'",
        (*key, *key, int(not validated), job.id),
    )
    trust.judged(
        conn,
        job.program,
        [r[1] for r in agreeing if validated and r[1] is not None],
        [r[1] for r in rows if tuple(r[6:]) != key and r[1] is not None],
    )
    amount = max(1, round(1000 * claim))
    paid = ledger.settle(
        conn, job.id, job.account_id, job.reserved, [(r[0], r[4], amount) for r in agreeing], now
    )
    _end_job(conn, job, "done", now, key)
    return paid


def _finish(conn: Connection, job: _Job, state: str, now: float) -> None:
    """End a job that no result is accepted for: its pending results are rejected and its
    reservation goes back to the buyer whole."""
    _reject_pending(conn, job.id)
    ledger.settle(conn, job.id, job.account_id, job.reserved, [], now)
    _end_job(conn, job, state, now, (None, None, None))


def _end_job(conn: Connection, job: _Job, state: str, now: float, key: tuple[object, ...]) -> None:
    """_end_jobs for one job."""
    _end_jobs(conn, [(job, key)], state, now)


def _end_jobs(
    conn: Connection, ended: list[tuple[_Job, tuple[object, ...]]], state: str, now: float
) -> None:
    """The rows of jobs ending in `state`, each with its (outcome, exit status, output
    sha256), in one UPDATE (their reservations too, emptied by ledger.settle_all); their
    other leases end too, so a late result finds them gone."""
    values: list[object] = [state, now]
    for job, key in ended:
        values += (job.id, key[0], key[1], key[2])
    conn.execute(_end_statement(len(ended)), values)
    leased = [job.id for job, _ in ended if job.other_leases > 0]
    if leased:
        conn.execute(
            "UPDATE leases SET state = 'expired', released = ? "
            f"WHERE job_id IN ({', '.join(['?'] * len(leased))}) AND state = 'active'",
            (now, *leased),
        )


@functools.cache
def _end_statement(count: int) -> str:
    """_end_jobs' UPDATE for `count` jobs: each job's row joined to its own values (not a
    CASE per column, whose WHENs every row walks: a batch's cost grew with its square).
    The casts give PostgreSQL the columns' types (VALUES of bare parameters are text)."""
    row = "(CAST(? AS BIGINT), CAST(? AS TEXT), CAST(? AS INTEGER), CAST(? AS TEXT))"
    return (
        "UPDATE jobs SET state = ?, finished = ?, slots = 0, reserved = 0, "
        "outcome = e.column2, exit_status = e.column3, output_sha256 = e.column4 "
        f"FROM (VALUES {', '.join([row] * count)}) AS e WHERE jobs.id = e.column1"
    )


def cancel(conn: Connection, account_id: int, job_id: int, now: float) -> None:
    """The buyer withdraws an open job: its reservation comes back whole."""
    row = conn.execute(
        "SELECT program, state, replicas, max_results, reserved, "
        "(SELECT count(*) FROM leases l WHERE l.job_id = jobs.id AND l.state = 'active') "
        "FROM jobs WHERE id = ? AND account_id = ?",
        (job_id, account_id),
    ).fetchone()
    if row is None:
        raise NotFound(f"no job {job_id} in your account")
    if row[1] != "open":
        raise Conflict(f"job {job_id} is {row[1]}: only an open job can be cancelled")
    conn.execute("UPDATE jobs SET cancelled = ? WHERE id = ?", (now, job_id))
    program, state, replicas, max_results, reserved, leases = row
    _finish(
        conn,
        _Job(
            job_id, account_id, program, state, replicas, max_results, int(reserved), leases, None
        ),
        "failed",
        now,
    )


def _reject_pending(conn: Connection, job_id: int) -> None:
    conn.execute(
        "UPDATE results SET verdict = 'rejected' WHERE job_id = ? AND verdict = 'pending'",
        (job_id,),
    )
