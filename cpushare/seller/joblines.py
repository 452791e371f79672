"""A seller's console lines of its jobs: `job-leased` and `job-finished`.

Every job's two lines, or, with a period, those of at most one job in each period: tiny
jobs end dozens of times a second, and each line costs the machine its bytes on the
serial console (about 14 µs a byte on an emulated port; a real one at 115200 baud carries
some 11 KB a second, less than two lines per job of such jobs), for a scroll nobody can
read. The jobs not shown are counted: `job-finished` says how many jobs the seller has
finished (`done`). A job that did not end `ok` is always said, and so is the last job
before the seller runs out of work (its count is then up to date on the console).
"""

from __future__ import annotations

import time

from cpushare.console import emitter

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import TextIO


class JobLines:
    """The lines of one seller's jobs, `every` seconds apart at least (0: every job's)."""

    def __init__(self, stream: TextIO | None, order: str, every: float) -> None:
        self.every = every
        self.done = 0  # jobs finished by this seller
        self._said_at: float | None = None  # the last `job-leased` said, time.monotonic()
        self._saying = False  # the running job's lines are said
        # Their order formatted once.
        self._leased = emitter("job-leased", stream, order=order)
        self._finished = emitter("job-finished", stream, order=order)

    def leased(self, job: int) -> None:
        """A job starts: its line, if the last one said is `every` seconds old."""
        now = time.monotonic()
        self._saying = self._said_at is None or now - self._said_at >= self.every
        if self._saying:
            self._said_at = now
            self._leased(job=job)

    def finished(self, job: int, status: str, cpu_seconds: float, *, last: bool) -> None:
        """A job ended: its line if its start was said, if it did not end `ok`, or if it
        is the `last` before the seller's queue runs dry."""
        self.done += 1
        if self._saying or last or status != "ok":
            self._finished(
                job=job, status=status, cpu_seconds=round(cpu_seconds, 3), done=self.done
            )
        self._saying = False
