"""Waiting in a test for what another process or thread does: ask until the answer comes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def until(
    look: Callable[[], T | None],
    what: str,
    timeout: float = 60,
    every: float = 0.1,
    told: Callable[[], object] | None = None,
) -> T:
    """What `look` returns once it is true, asked every `every` seconds; an AssertionError
    naming `what` was waited for when it is still not after `timeout` seconds, followed
    by what `told` then returns (a console, a status) if given."""
    give_up = time.monotonic() + timeout
    while True:
        if found := look():
            return found
        if time.monotonic() > give_up:
            more = f":\n{told()}" if told is not None else ""
            raise AssertionError(f"waited {timeout:g} s in vain for {what}{more}")
        time.sleep(every)
