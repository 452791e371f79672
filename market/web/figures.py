"""The home page's live figures, BOINC's server status broken down by program: what is
queued, what ran in the last day, the CPU time it took and the coins it paid.

Computed at most every FIGURES_SECONDS whatever the traffic, like /v1/stats: the page
needs no sign-in, so its cost must not grow with its visitors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from market.dialect import Connection

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
    sellers: int
    jobs_per_minute: int
    queued: int
    cpu_seconds: float
    millicoins: int
    programs: list[ProgramDay] = field(default_factory=list)


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


def figures(conn: Connection, now: float, sellers: int) -> Figures:
    programs = programs_last_day(conn, now)
    (per_minute,) = conn.execute(
        "SELECT count(*) FROM results WHERE created >= ?", (now - 60,)
    ).fetchone()
    return Figures(
        sellers=sellers,
        jobs_per_minute=int(per_minute),
        queued=sum(p.queued for p in programs),
        cpu_seconds=sum(p.cpu_seconds for p in programs),
        millicoins=sum(p.millicoins for p in programs),
        programs=programs,
    )


class CachedFigures:
    """figures(), computed again only when FIGURES_SECONDS have passed."""

    def __init__(self) -> None:
        self._figures: Figures | None = None
        self._at = float("-inf")

    def get(self, conn: Connection, now: float, sellers: Callable[[], int]) -> Figures:
        if self._figures is None or not 0 <= now - self._at < FIGURES_SECONDS:
            self._figures = figures(conn, now, sellers())
            self._at = now
        return self._figures
