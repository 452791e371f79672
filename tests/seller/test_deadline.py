"""A whole exchange bounded in time: the process's one watch cuts a connection at its
deadline, and sleeps through requests that end long before theirs."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cpushare.seller.deadline import Deadline


class _Conn:
    """A connection as a Deadline sees it: its socket while open."""

    def __init__(self, sock: socket.socket | None) -> None:
        self.sock = sock


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def _watch_thread() -> threading.Thread:
    with Deadline(_Conn(None), 60):  # the watch exists from the first deadline on
        pass
    (thread,) = [t for t in threading.enumerate() if t.name == "deadlines"]
    return thread


def _voluntary_switches(thread: threading.Thread) -> int:
    """How many times `thread` went to sleep (each wake-up of it ends in one)."""
    status = Path(f"/proc/self/task/{thread.native_id}/status").read_text()
    line = next(x for x in status.splitlines() if x.startswith("voluntary_ctxt_switches"))
    return int(line.split()[1])


def test_a_blocked_read_is_cut_at_its_deadline(pair: tuple[socket.socket, socket.socket]) -> None:
    a, _ = pair
    started = time.monotonic()
    with Deadline(_Conn(a), 0.3) as cut:
        assert a.recv(1) == b""  # the peer says nothing: only the cut ends the read
    assert cut.expired and time.monotonic() - started >= 0.3


def test_requests_ended_in_time_leave_the_watch_asleep() -> None:
    """A wake-up per request was a switch to the watch's thread and back; the watch
    already waits for a sooner deadline than each of these."""
    thread = _watch_thread()
    conn = _Conn(None)
    with Deadline(conn, 30):  # the watch now waits for this one's time
        time.sleep(0.05)
        before = _voluntary_switches(thread)
        for _ in range(50):
            with Deadline(conn, 60) as later:
                pass
            assert not later.expired
        assert _voluntary_switches(thread) - before <= 1


def test_a_sooner_deadline_wakes_the_watch(pair: tuple[socket.socket, socket.socket]) -> None:
    """The watch, asleep until a far deadline, is woken for a nearer one."""
    a, _ = pair
    with Deadline(_Conn(None), 60):
        time.sleep(0.05)  # the watch sleeps until its earliest deadline, 20 s away or more
        started = time.monotonic()
        with Deadline(_Conn(a), 0.3) as cut:
            assert a.recv(1) == b""
        assert cut.expired and time.monotonic() - started < 10
