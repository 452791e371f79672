"""Research groups' pages: batches of jobs uploaded as a program and its inputs (through
the same checks and store code as POST /v1/jobs), their progress, failures, results as
one archive, cancelling."""

from __future__ import annotations

import re
import time

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from cpushare.limits import MAX_INPUT_BYTES, MAX_PROGRAM_BYTES, JobLimits, default_wall_seconds
from market import agreement, jobs
from market.dialect import Connection
from market.errors import MarketError, NotFound
from market.web import archive
from market.web.account import text
from market.web.portal import Portal, Visitor, redirect

# A name kept for the archive: the file's own name without folders or odd characters.
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(name: str | None, fallback: str) -> str:
    base = _UNSAFE.sub("_", (name or "").rsplit("/", 1)[-1].rsplit("\\", 1)[-1])
    return base.strip("._")[:80] or fallback


def _replicas(value: object) -> int | None:
    if value in (None, "", "adaptive"):
        return None
    if not isinstance(value, str) or not value.isdigit():
        raise MarketError("replicas must be 'adaptive' or a number of agreeing hosts")
    return int(value)


def _limits(value: object) -> JobLimits:
    if value in (None, ""):
        return JobLimits()
    if not isinstance(value, str) or not value.isdigit():
        raise MarketError("CPU seconds per job must be a whole number")
    seconds = int(value)
    return JobLimits(cpu_seconds=seconds, wall_seconds=default_wall_seconds(seconds))


def _batch(conn: Connection, account: int, batch_id: int) -> tuple[object, ...]:
    row = conn.execute(
        "SELECT id, label, program, created FROM batches WHERE id = ? AND account_id = ?",
        (batch_id, account),
    ).fetchone()
    if row is None:
        raise NotFound(f"no batch {batch_id} in your account")
    return tuple(row)


async def batches_page(portal: Portal, _request: Request, visitor: Visitor) -> Response:
    user = visitor.need_user()
    rows = portal.market.db.reader.execute(
        "SELECT b.id, b.label, b.created, count(j.id), "
        "count(*) FILTER (WHERE j.state = 'done' AND j.outcome = 'ok'), "
        "count(*) FILTER (WHERE j.state = 'failed' OR (j.state = 'done' AND j.outcome <> 'ok')) "
        "FROM batches b LEFT JOIN jobs j ON j.batch_id = b.id WHERE b.account_id = ? "
        "GROUP BY b.id, b.label, b.created ORDER BY b.id DESC",
        (user.id,),
    ).fetchall()
    (balance,) = portal.market.db.reader.execute(
        "SELECT millicoins FROM accounts WHERE id = ?", (user.id,)
    ).fetchone()
    return portal.page(
        visitor,
        "batches.html",
        batches=rows,
        balance=balance,
        default_cpu=JobLimits().cpu_seconds,
    )


async def _file(item: object, what: str, cap: int) -> tuple[str, bytes]:
    if not isinstance(item, UploadFile):
        raise MarketError(f"{what} is missing: choose a file")
    data = await item.read(cap + 1)
    if len(data) > cap:
        raise MarketError(f"{what} {item.filename} is larger than {cap} bytes")
    return item.filename or "", data


async def upload(portal: Portal, request: Request, visitor: Visitor) -> Response:
    user = visitor.need_user()
    cap = portal.market.config.max_body + MAX_PROGRAM_BYTES
    form = await portal.form(request, visitor, cap)
    label = text(form, "label", "the batch's name", 80)
    _, program = await _file(form.get("program"), "the program", MAX_PROGRAM_BYTES)
    files = [
        await _file(item, "an input", MAX_INPUT_BYTES)
        for item in form.getlist("inputs")
        if not isinstance(item, UploadFile) or item.filename
    ]
    if not files:
        raise MarketError("the batch has no inputs: choose one file per job")
    replicas = _replicas(form.get("replicas"))
    limits = _limits(form.get("cpu_seconds"))
    inputs = [data for _, data in files]
    names = [safe_name(name, f"input-{i}") for i, (name, _) in enumerate(files)]
    # The checks of PUT /v1/programs and POST /v1/jobs, in the same order.
    sha256 = jobs.check_program(program)
    jobs.check_batch(inputs, replicas, limits)
    jobs.check_program(program, limits)

    def submit(conn: Connection) -> int:
        jobs.store_program(conn, user.id, program, sha256)
        ids = jobs.submit_jobs(conn, user.id, sha256, inputs, limits, replicas)
        (batch_id,) = conn.execute(
            "INSERT INTO batches (account_id, label, program, created) VALUES (?, ?, ?, ?) "
            "RETURNING id",
            (user.id, label, sha256, time.time()),
        ).fetchone()
        conn.executemany(
            "UPDATE jobs SET batch_id = ?, input_name = ? WHERE id = ?",
            [(batch_id, name, job) for name, job in zip(names, ids, strict=True)],
        )
        return int(batch_id)

    batch_id = await portal.market.db.write(submit)
    portal.market.notify()  # waiting sellers lease the new jobs now
    return redirect(f"/account/batches/{batch_id}")


async def batch_page(portal: Portal, request: Request, visitor: Visitor) -> Response:
    user = visitor.need_user()
    reader = portal.market.db.reader
    batch = _batch(reader, user.id, request.path_params["batch"])
    rows = reader.execute(
        "SELECT id, input_name, state, outcome, exit_status, reserved, "
        "(SELECT count(*) FROM results r WHERE r.job_id = jobs.id), "
        "(SELECT count(*) FROM leases l WHERE l.job_id = jobs.id AND l.state = 'active'), "
        "cancelled FROM jobs WHERE batch_id = ? ORDER BY id",
        (batch[0],),
    ).fetchall()
    # A job that ran but did not end well (a crash, a non-zero exit) is a failure too.
    failed = sum(1 for r in rows if r[2] == "failed" or (r[2] == "done" and r[3] != "ok"))
    done = sum(1 for r in rows if r[2] != "open") - failed
    (spent,) = reader.execute(
        "SELECT coalesce(sum(t.millicoins), 0) FROM transfers t JOIN results r "
        "ON r.id = t.result_id JOIN jobs j ON j.id = r.job_id "
        "WHERE t.kind = 'pay' AND j.batch_id = ?",
        (batch[0],),
    ).fetchone()
    return portal.page(
        visitor,
        "batch.html",
        batch=batch,
        jobs=rows,
        done=done,
        failed=failed,
        spent=spent,
        held=sum(int(r[5]) for r in rows),
    )


async def results(portal: Portal, request: Request, visitor: Visitor) -> Response:
    user = visitor.need_user()
    batch = _batch(portal.market.db.reader, user.id, request.path_params["batch"])
    name = f"batch-{batch[0]}-results.tar"
    return StreamingResponse(
        archive.batch_tar(portal.market.db, int(str(batch[0]))),
        media_type="application/x-tar",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


async def cancel(portal: Portal, request: Request, visitor: Visitor) -> Response:
    user = visitor.need_user()
    await portal.form(request, visitor)
    batch = _batch(portal.market.db.reader, user.id, request.path_params["batch"])

    def withdraw(conn: Connection) -> None:
        now = time.time()
        open_jobs = conn.execute(
            "SELECT id FROM jobs WHERE batch_id = ? AND state = 'open'", (batch[0],)
        ).fetchall()
        for (job_id,) in open_jobs:
            agreement.cancel(conn, user.id, int(job_id), now)

    await portal.market.db.write(withdraw)
    portal.market.notify()
    return redirect(f"/account/batches/{batch[0]}")
