"""Buyers' side of the store: programs by sha256, job batches, their status and results."""

from __future__ import annotations

import hashlib
import time

from cpushare.jail import InvalidProgram, Limits, validate_program
from cpushare.limits import BOUNDS, MAX_INPUT_BYTES, MAX_PROGRAM_BYTES, JobLimits
from market import ledger
from market.dialect import Connection
from market.errors import Conflict, MarketError, NotFound

MAX_BATCH_JOBS = 1000
MAX_REPLICAS = 10
# Agreeing hosts an adaptive job needs while its hosts are not trusted yet.
ADAPTIVE_QUORUM = 2
# An upload is checked against the largest memory a job may ask for; each batch then
# against its own limits.
MOST_MEMORY = JobLimits(memory_bytes=BOUNDS["memory_bytes"].high)


def check_program(program: bytes, limits: JobLimits = MOST_MEMORY) -> str:
    """The program's sha256 if the jail would run it under `limits`, else a MarketError."""
    if len(program) > MAX_PROGRAM_BYTES:
        raise MarketError(f"the program is larger than {MAX_PROGRAM_BYTES} bytes")
    try:
        validate_program(program, Limits.for_job(limits))
    except InvalidProgram as exc:
        raise MarketError(f"not a valid job program: {exc}") from None
    return hashlib.sha256(program).hexdigest()


def store_program(conn: Connection, account: int, program: bytes, sha256: str) -> bool:
    """Keep a validated program, owned by `account` too; True if its bytes were new."""
    cursor = conn.execute(
        "INSERT INTO programs (sha256, size, data, account_id, created) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (sha256, len(program), program, account, time.time()),
    )
    conn.execute(
        "INSERT INTO program_owners (sha256, account_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
        (sha256, account),
    )
    return cursor.rowcount == 1


def program_bytes(conn: Connection, sha256: str) -> bytes:
    row = conn.execute("SELECT data FROM programs WHERE sha256 = ?", (sha256,)).fetchone()
    if row is None:
        raise NotFound(f"no program {sha256}: upload it first")
    return bytes(row[0])


def submit_jobs(
    conn: Connection,
    account: int,
    program: str,
    inputs: list[bytes],
    limits: JobLimits,
    replicas: int | None,
) -> list[int]:
    """Queue one job per input, all or none; return their ids in input order.

    `replicas` None is adaptive replication (two agreeing hosts until they earn trust);
    k is always k agreeing hosts (1: trust every seller). Each job's worst case (its CPU cap
    times its most results) moves from the buyer's balance to the job's reservation.
    """
    now = time.time()
    adaptive = replicas is None
    quorum = ADAPTIVE_QUORUM if replicas is None else replicas
    max_results = 2 * quorum + 1
    each = limits.cpu_seconds * 1000 * max_results
    ledger.afford(conn, account, each * len(inputs))
    ids: list[int] = []
    for data in inputs:
        job_id = conn.execute(
            """
            INSERT INTO jobs (account_id, program, input, cpu_seconds, wall_seconds,
                              memory_bytes, output_bytes, replicas, max_results, slots, created,
                              adaptive)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id
            """,
            (
                account,
                program,
                data,
                limits.cpu_seconds,
                limits.wall_seconds,
                limits.memory_bytes,
                limits.output_bytes,
                quorum,
                max_results,
                quorum,
                now,
                int(adaptive),
            ),
        ).fetchone()[0]
        ledger.reserve(conn, account, job_id, each, now)
        ids.append(job_id)
    return ids


def check_batch(inputs: list[bytes], replicas: int | None, limits: JobLimits) -> None:
    """Raise a MarketError naming every problem of a batch before anything is stored."""
    problems = limits.problems()
    if not 1 <= len(inputs) <= MAX_BATCH_JOBS:
        problems.append(f"a batch holds 1 to {MAX_BATCH_JOBS} inputs, not {len(inputs)}")
    if replicas is not None and not 1 <= replicas <= MAX_REPLICAS:
        problems.append(f"replicas is {replicas}: it must be between 1 and {MAX_REPLICAS}")
    big = [i for i, data in enumerate(inputs) if len(data) > MAX_INPUT_BYTES]
    if big:
        problems.append(f"inputs {big[:5]} are larger than {MAX_INPUT_BYTES} bytes")
    if problems:
        raise MarketError("; ".join(problems))


_JOB_COLUMNS = (
    "id, state, replicas, outcome, exit_status, output_sha256, created, finished, "
    "(SELECT count(*) FROM results r WHERE r.job_id = jobs.id), "
    "(SELECT count(*) FROM leases l WHERE l.job_id = jobs.id AND l.state = 'active'), "
    "(SELECT max(cpu_seconds) FROM results r WHERE r.job_id = jobs.id AND verdict = 'accepted')"
)


def _job_dict(row: tuple[object, ...]) -> dict[str, object]:
    keys = (
        "id",
        "state",
        "replicas",
        "outcome",
        "exit_status",
        "output_sha256",
        "created",
        "finished",
        "results",
        "leased",
        "cpu_seconds",
    )
    return dict(zip(keys, row, strict=True))


def job_status(conn: Connection, account: int, job_id: int) -> dict[str, object]:
    row = conn.execute(
        f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ? AND account_id = ?", (job_id, account)
    ).fetchone()
    if row is None:
        raise NotFound(f"no job {job_id} in your account")
    return _job_dict(row)


def list_jobs(
    conn: Connection, account: int, state: str | None, after: int, limit: int
) -> list[dict[str, object]]:
    """The account's jobs with id > after, oldest first, optionally in one state."""
    rows = conn.execute(
        f"SELECT {_JOB_COLUMNS} FROM jobs WHERE account_id = ? AND id > ? "
        "AND (CAST(? AS TEXT) IS NULL OR state = ?) ORDER BY id LIMIT ?",
        (account, after, state, state, limit),
    ).fetchall()
    return [_job_dict(row) for row in rows]


def job_output(conn: Connection, account: int, job_id: int) -> bytes:
    """The accepted output of a finished job."""
    state = job_status(conn, account, job_id)["state"]
    if state != "done":
        raise Conflict(f"job {job_id} is {state}: it has no accepted result")
    row = conn.execute(
        "SELECT output FROM results WHERE job_id = ? AND verdict = 'accepted' LIMIT 1", (job_id,)
    ).fetchone()
    return bytes(row[0])
