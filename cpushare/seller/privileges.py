"""The fleet runs as root; whatever talks to the market runs as the unprivileged user."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import traceback
from collections.abc import Callable
from types import FrameType
from typing import Any

from cpushare.order import SellOrder
from cpushare.seller.host import Identity, enroll_machine


def drop_to(user: tuple[int, int]) -> None:
    """Become (uid, gid) for good, with no supplementary groups."""
    uid, gid = user
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)


def _stop(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def enroll_as(
    user: tuple[int, int] | None, orders: list[SellOrder], backoff_max: float
) -> list[Identity | None]:
    """`enroll_machine(orders)`, talking to the market as `user`."""

    def enroll() -> list[dict[str, Any] | None]:
        found = enroll_machine(orders, backoff_max)
        return [None if i is None else i.document() for i in found]

    return [None if d is None else Identity.from_document(d) for d in call_as(user, enroll)]


def call_as(user: tuple[int, int] | None, work: Callable[[], Any]) -> Any:
    """`work()`'s value (JSON), computed as `user` in a forked child, or here without a
    user. RuntimeError when the child fails; SIGTERM meanwhile kills the child too."""
    if user is None:
        return work()
    read_fd, write_fd = os.pipe()
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        code = 70
        try:
            os.close(read_fd)
            drop_to(user)
            data = json.dumps(work()).encode()
            with os.fdopen(write_fd, "wb") as out:
                out.write(data)
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            os._exit(code)
    os.close(write_fd)
    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        with os.fdopen(read_fd, "rb") as answer:
            data = answer.read()
        _, status = os.waitpid(pid, 0)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    if status != 0:
        raise RuntimeError(f"the unprivileged child ended with status {status}")
    return json.loads(data)
