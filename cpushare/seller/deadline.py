"""A whole exchange with the market bounded in time, not only each read of it.

A socket's timeout bounds each read: a market that drips its reply a byte at a time
never trips it, and could hold a seller for as long as it likes. A Deadline cuts the
connection once its time is up; the blocked read then ends and the client reports it.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import threading
import time

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Protocol

    class _Connected(Protocol):
        """A connection whose socket, while it is open, is `sock`."""

        sock: socket.socket | None


class _Watch:
    """One thread per process cutting the connections whose deadline passed: starting a
    thread per request (a timer each) cost more than the request itself under emulation.
    It is woken only for a deadline sooner than the wake-up it waits for: requests one
    after another, each ended long before its deadline, leave it asleep (a wake-up per
    request was a switch to its thread and back, under emulation some of a request's
    cost); it wakes at the earliest deadline it saw, and sleeps on to the next."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.armed: dict[Deadline, float] = {}
        self.pid = os.getpid()
        self.waking = math.inf  # when the thread's wait ends (by time.monotonic())
        threading.Thread(target=self._run, name="deadlines", daemon=True).start()

    def arm(self, deadline: Deadline, when: float) -> None:
        """Cut `deadline`'s connection at `when` (the caller holds the lock)."""
        self.armed[deadline] = when
        if when < self.waking:
            self.waking = when
            self.cond.notify()

    def _run(self) -> None:
        with self.cond:
            while True:
                now = time.monotonic()
                for deadline, when in list(self.armed.items()):
                    if when <= now:
                        del self.armed[deadline]
                        deadline.cut()
                self.waking = min(self.armed.values(), default=math.inf)
                wait = None if self.waking == math.inf else max(0.0, self.waking - now)
                self.cond.wait(wait)


_watch: _Watch | None = None
_watch_lock = threading.Lock()


def _the_watch() -> _Watch:
    """This process's watch (a forked child starts its own: threads do not cross a fork)."""
    global _watch
    with _watch_lock:
        if _watch is None or _watch.pid != os.getpid():
            _watch = _Watch()
        return _watch


class Deadline:
    """`with Deadline(conn, seconds):` cuts `conn` when `seconds` have passed inside;
    `expired` then says so."""

    def __init__(self, conn: _Connected, seconds: float) -> None:
        self.conn = conn
        self.expired = False
        self.seconds = seconds
        self._watch = _the_watch()

    def cut(self) -> None:
        """Cut the connection now (the watch's thread, holding its lock)."""
        self.expired = True
        sock = self.conn.sock
        if sock is not None:
            # The plain socket's shutdown, also under TLS (the TLS one would talk first).
            with contextlib.suppress(OSError):  # closed meanwhile
                socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def __enter__(self) -> Deadline:
        with self._watch.cond:
            self._watch.arm(self, time.monotonic() + self.seconds)
        return self

    def __exit__(self, *_: object) -> None:
        # Under the watch's lock: once out, no cut is under way nor to come.
        with self._watch.cond:
            self._watch.armed.pop(self, None)
