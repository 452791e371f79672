"""Work done once in a forked child, its result sent back as JSON: what the work imports
stays in the child.

The fleet forks every seller from its own memory, and a module it imports costs the live
system for as long as it sells: in the fleet, and in each seller that writes to its
pages. Work done once at boot with modules the fleet needs for nothing else (reading the
orders: tomllib, which brings typing, datetime and string, about 1 MiB) runs in a child
that exits when it is done.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable

from cpushare.seller.privileges import child_exit

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any


class ChildFailed(RuntimeError):
    """The child died before it sent its result (it said why on its way out)."""


def in_child(work: Callable[[], object]) -> Any:
    """`work()` run in a forked child; its result, which must be JSON, read back."""
    read_fd, write_fd = os.pipe()
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:

        def send() -> int:
            os.close(read_fd)
            data = json.dumps(work()).encode()
            with open(write_fd, "wb") as out:
                out.write(data)
            return 0

        child_exit(send)
    os.close(write_fd)
    with open(read_fd, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    if status != 0 or not data:
        raise ChildFailed(f"the child exited with status {os.waitstatus_to_exitcode(status)}")
    return json.loads(data)
