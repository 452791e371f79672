"""The home page's live figures, BOINC's server status broken down by program: what is
queued, what ran in the last day, the CPU time it took and the coins it paid.

Computed at most every FIGURES_SECONDS whatever the traffic, like /v1/stats, and off the
event loop: the page needs no sign-in, so its cost must not grow with its visitors, and
the sellers leasing on the same loop must not wait for it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from market import stats
from market.dialect import Connection, Location
from market.errors import MarketError
from market.store import connect

log = logging.getLogger("market")

FIGURES_SECONDS = 5.0
DAY = 86400.0


@dataclass(frozen=True)
class ProgramDay:
    program: str
    queued: int
    running: int
    results: int
    cpu_seconds: float
    millicoins: int


@dataclass(frozen=True)
class Figures:
    # Machines (hosts) whose sellers asked this instance for work lately.
    machines: int
    jobs_per_minute: int
    queued: int
    cpu_seconds: float
    millicoins: int
    programs: list[ProgramDay] = field(default_factory=list)
    # The opted-in accounts and the coins they earned (market.stats).
    leaderboard: list[dict[str, object]] = field(default_factory=list)


def programs_last_day(conn: Connection, now: float) -> list[ProgramDay]:
    """Per program: jobs queued and leased now; results, CPU seconds and coins paid in
    the last day. Programs with none of these are left out."""
    queued = dict(
        conn.execute(
            "SELECT program, count(*) FROM jobs WHERE state = 'open' GROUP BY program"
        ).fetchall()
    )
    running = dict(
        conn.execute(
            "SELECT j.program, count(*) FROM leases l JOIN jobs j ON j.id = l.job_id "
            "WHERE l.state = 'active' GROUP BY j.program"
        ).fetchall()
    )
    day = {
        str(p): (int(n), float(cpu or 0.0))
        for p, n, cpu in conn.execute(
            "SELECT j.program, count(*), sum(r.cpu_seconds) FROM results r "
            "JOIN jobs j ON j.id = r.job_id WHERE r.created >= ? GROUP BY j.program",
            (now - DAY,),
        ).fetchall()
    }
    paid = dict(
        conn.execute(
            "SELECT j.program, sum(t.millicoins) FROM transfers t "
            "JOIN results r ON r.id = t.result_id JOIN jobs j ON j.id = r.job_id "
            "WHERE t.kind = 'pay' AND t.created >= ? GROUP BY j.program",
            (now - DAY,),
        ).fetchall()
    )
    names = sorted(set(queued) | set(running) | set(day) | set(paid))
    return [
        ProgramDay(
            program=str(name),
            queued=int(queued.get(name, 0)),
            running=int(running.get(name, 0)),
            results=day.get(name, (0, 0.0))[0],
            cpu_seconds=day.get(name, (0, 0.0))[1],
            millicoins=int(paid.get(name, 0) or 0),
        )
        for name in names
    ]


def figures(conn: Connection, now: float, machines: int) -> Figures:
    programs = programs_last_day(conn, now)
    (per_minute,) = conn.execute(
        "SELECT count(*) FROM results WHERE created >= ?", (now - 60,)
    ).fetchone()
    return Figures(
        machines=machines,
        jobs_per_minute=int(per_minute),
        queued=sum(p.queued for p in programs),
        cpu_seconds=sum(p.cpu_seconds for p in programs),
        millicoins=sum(p.millicoins for p in programs),
        programs=programs,
    )


class LiveFigures:
    """figures() and the leaderboard, computed again at most every FIGURES_SECONDS, in a
    thread on a connection of its own: a visitor gets the last figures at once and never
    waits for the queries, nor do the sellers sharing the event loop."""

    def __init__(self, db: Location) -> None:
        self._db = db
        self._figures: Figures | None = None
        self._at = float("-inf")
        self._refresh: asyncio.Task[None] | None = None

    async def get(self, now: float, machines: Callable[[], int]) -> Figures:
        stale = not 0 <= now - self._at < FIGURES_SECONDS
        if stale and (self._refresh is None or self._refresh.done()):
            self._refresh = asyncio.create_task(self._compute(now, machines()))
        if self._figures is None:
            assert self._refresh is not None
            await asyncio.shield(self._refresh)
        assert self._figures is not None
        return self._figures

    async def _compute(self, now: float, machines: int) -> None:
        try:
            self._figures = await asyncio.to_thread(self._read, now, machines)
            self._at = now
        except MarketError:
            if self._figures is None:
                raise
            log.warning("the home page's figures are stale: the database is unavailable")

    def _read(self, now: float, machines: int) -> Figures:
        conn = connect(self._db)
        try:
            board = stats.public_stats(conn, now)["leaderboard"]
            assert isinstance(board, list)
            return replace(figures(conn, now, machines), leaderboard=board)
        finally:
            conn.close()
