"""A seller dies with the process that started it (the fleet, or `livecd sell`).

The parent makes a pipe and keeps its write end; the seller holds only the read end and
a thread of its own blocks reading it. Nothing is ever written, so the read returns only
at end-of-file, which the kernel gives once no process holds the write end: when the
parent is gone, however it went (SIGKILL included). The seller then stops as on SIGTERM,
handing its lease back.

Why a pipe: the kernel closes the write end on every exit, so it is exact and has no
race (a parent that died before the seller started watching shows at the first read).
Polling `os.getppid()` is late by its period and wakes every seller for nothing;
PR_SET_PDEATHSIG needs prctl, which the standard library reaches only through ctypes,
absent from the image.
"""

from __future__ import annotations

import os
import signal
import threading


class Lifeline:
    """The parent's pipe; `read_fd` goes to the sellers, `write_fd` stays with the parent."""

    def __init__(self) -> None:
        # Both ends are non-inheritable: no program a seller or the parent runs gets one.
        self.read_fd, self.write_fd = os.pipe()

    def in_child(self) -> None:
        """In a forked seller: let go of the parent's end, then watch."""
        os.close(self.write_fd)
        watch(self.read_fd)

    def close(self) -> None:
        os.close(self.read_fd)
        os.close(self.write_fd)


def watch(read_fd: int) -> None:
    """SIGTERM to this process's main thread once the write end of `read_fd`'s pipe is
    closed everywhere. The SIGTERM handler must be in place."""
    # A seller started with the fd passed on (`--lifeline`) does not hand it to its jobs.
    os.set_inheritable(read_fd, False)
    main = threading.main_thread().ident
    assert main is not None

    def wait_for_end() -> None:
        while os.read(read_fd, 1):
            pass
        # To the main thread: a signal there interrupts whatever call it waits in.
        signal.pthread_kill(main, signal.SIGTERM)

    threading.Thread(target=wait_for_end, name="lifeline", daemon=True).start()
