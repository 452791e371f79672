"""The fleet runs as root; whatever talks to the market runs as the unprivileged user.

That includes enrolling the machine: `Enrollment` does it in a forked child that drops to
the sellers' user (or, for a lone seller, in a thread of that seller), while the fleet
goes on supervising; the fleet collects the identities from a pipe without ever blocking
on it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType

from cpushare.order import SellOrder
from cpushare.seller.host import Identity, enroll_machine, write_identity
from cpushare.seller.lifeline import Lifeline

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import NoReturn


def child_exit(main: Callable[[], int]) -> NoReturn:
    """In a forked child: run `main` and leave with its status (70 if it crashed, with
    its traceback), never returning into the parent's code, which the child shares."""
    code = 70
    try:
        code = main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        import traceback  # only for a crash

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        os._exit(code)


def drop_to(user: tuple[int, int]) -> None:
    """Become (uid, gid) for good, with no supplementary groups."""
    uid, gid = user
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)


def _stop(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def send_identities(
    write_fd: int, orders: list[SellOrder], backoff_max: float
) -> list[Identity | None]:
    """`enroll_machine(orders)`, its identities as JSON down `write_fd`, which is closed
    whatever happens: the reader sees the end."""
    with os.fdopen(write_fd, "wb") as out:
        found = enroll_machine(orders, backoff_max)
        out.write(json.dumps([None if i is None else i.document() for i in found]).encode())
    return found


def enroll_beside(write_fd: int, orders: list[SellOrder], backoff_max: float, own: int) -> None:
    """`send_identities` in a thread of this process, a lone seller's (already the
    unprivileged user), which gets its own identity (`orders[0]`'s) down the pipe `own`
    at once, not once the fleet has read them. Every signal is blocked in that thread:
    they go to the main thread. Should the enrollment crash, the seller ends (status 70)
    and the fleet starts another, which it enrolls in a child."""

    def enroll() -> None:
        try:
            found = send_identities(write_fd, orders, backoff_max)
        except BaseException:
            import traceback  # only for a crash

            traceback.print_exc()
            sys.stdout.flush()
            os._exit(70)
        write_identity(own, found[0])

    mask = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    try:
        thread = threading.Thread(target=enroll, name="enroll")
        thread.daemon = True
        thread.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


class Enrollment:
    """The identities that process `pid` sends down the pipe `read_fd` (`send_identities`),
    read without ever blocking: a child that only enrolls (`start`), or a lone seller
    that enrolls beside its own start (`enroll_beside`), saving a process."""

    def __init__(self, pid: int, read_fd: int) -> None:
        self._buffer = b""
        os.set_blocking(read_fd, False)
        self.pid = pid
        self.read_fd: int | None = read_fd
        self.reaped = False  # the fleet reaped the process: its pid may be another's now

    @classmethod
    def start(
        cls,
        user: tuple[int, int] | None,
        orders: list[SellOrder],
        backoff_max: float,
        lifeline: Lifeline,
    ) -> Enrollment:
        """`enroll_machine(orders)`, as `user`, in a child that dies with the fleet (it
        watches the fleet's lifeline) and may wait for the market for long."""
        read_fd, write_fd = os.pipe()
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:

            def enroll() -> int:
                os.close(read_fd)
                signal.signal(signal.SIGTERM, _stop)
                signal.pthread_sigmask(signal.SIG_SETMASK, set())
                lifeline.in_child()
                if user is not None:
                    drop_to(user)
                send_identities(write_fd, orders, backoff_max)
                return 0

            child_exit(enroll)
        os.close(write_fd)
        return cls(pid, read_fd)

    def poll(self) -> list[Identity | None] | None:
        """The identity of each order's seller once the child is done, None before.
        ValueError if the child ended without them (the fleet reaps it, as any child)."""
        assert self.read_fd is not None, "polled after the end"
        while True:
            try:
                chunk = os.read(self.read_fd, 1 << 16)
            except BlockingIOError:
                return None
            if not chunk:
                break
            self._buffer += chunk
        os.close(self.read_fd)
        self.read_fd = None
        try:
            docs = json.loads(self._buffer)
            return [None if d is None else Identity.from_document(d) for d in docs]
        except (ValueError, TypeError) as exc:
            raise ValueError(f"the enrollment ended without identities: {exc}") from None

    def cancel(self) -> None:
        """Stop the child (if it still runs; the fleet reaps it) and drop the pipe."""
        if self.read_fd is not None:
            os.close(self.read_fd)
            self.read_fd = None
        if not self.reaped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
