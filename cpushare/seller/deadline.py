"""A whole exchange with the market bounded in time, not only each read of it.

A socket's timeout bounds each read: a market that drips its reply a byte at a time
never trips it, and could hold a seller for as long as it likes. A Deadline cuts the
connection once its time is up; the blocked read then ends and the client reports it.
"""

from __future__ import annotations

import contextlib
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
    thread per request (a timer each) cost more than the request itself under emulation."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.armed: dict[Deadline, float] = {}
        self.pid = os.getpid()
        threading.Thread(target=self._run, name="deadlines", daemon=True).start()

    def _run(self) -> None:
        with self.cond:
            while True:
                now = time.monotonic()
                for deadline, when in list(self.armed.items()):
                    if when <= now:
                        del self.armed[deadline]
                        deadline.cut()
                soonest = min(self.armed.values(), default=None)
                self.cond.wait(None if soonest is None else max(0.0, soonest - now))


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
            self._watch.armed[self] = time.monotonic() + self.seconds
            self._watch.cond.notify()
        return self

    def __exit__(self, *_: object) -> None:
        # Under the watch's lock: once out, no cut is under way nor to come.
        with self._watch.cond:
            self._watch.armed.pop(self, None)
