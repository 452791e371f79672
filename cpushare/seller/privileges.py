"""The fleet runs as root; whatever talks to the market runs as the unprivileged user.

That includes enrolling the machine: `Enrollment` does it in a forked child that drops to
the sellers' user, while the fleet goes on supervising; the fleet collects the identities
from a pipe without ever blocking on it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from collections.abc import Callable
from types import FrameType

from cpushare.order import SellOrder
from cpushare.seller.host import Identity, enroll_machine
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


class Enrollment:
    """`enroll_machine(orders)`, as `user`, in a child that dies with the fleet (it
    watches the fleet's lifeline) and may wait for the market for long."""

    def __init__(
        self,
        user: tuple[int, int] | None,
        orders: list[SellOrder],
        backoff_max: float,
        lifeline: Lifeline,
    ) -> None:
        self._buffer = b""
        read_fd, write_fd = os.pipe()
        sys.stdout.flush()
        self.pid = os.fork()
        if self.pid == 0:

            def enroll() -> int:
                os.close(read_fd)
                signal.signal(signal.SIGTERM, _stop)
                signal.pthread_sigmask(signal.SIG_SETMASK, set())
                lifeline.in_child()
                if user is not None:
                    drop_to(user)
                found = enroll_machine(orders, backoff_max)
                docs = [None if i is None else i.document() for i in found]
                with os.fdopen(write_fd, "wb") as out:
                    out.write(json.dumps(docs).encode())
                return 0

            child_exit(enroll)
        os.close(write_fd)
        os.set_blocking(read_fd, False)
        self.read_fd: int | None = read_fd
        self.reaped = False  # the fleet reaped the child: its pid may be another's now

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
