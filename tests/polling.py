"""Waiting in a test for what another process or thread does: ask until the answer comes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def until(look: Callable[[], T | None], what: str, timeout: float = 60, every: float = 0.1) -> T:
    """What `look` returns once it is true, asked every `every` seconds; an AssertionError
    naming `what` was waited for when it is still not after `timeout` seconds."""
    give_up = time.monotonic() + timeout
    while True:
        if found := look():
            return found
        if time.monotonic() > give_up:
            raise AssertionError(f"waited {timeout:g} s in vain for {what}")
        time.sleep(every)
