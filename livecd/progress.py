"""Reporting progress and timings of long work, without tying the library to a terminal."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")


class Progress:
    """Records how long each stage took; a terminal front end overrides the hooks."""

    def __init__(self) -> None:
        self.timings: list[tuple[str, float]] = []

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self.started(name)
        start = time.monotonic()
        yield
        elapsed = time.monotonic() - start
        self.timings.append((name, elapsed))
        self.finished(name, elapsed)

    def each(self, items: Sequence[T], label: str, show: Callable[[T], str]) -> Iterable[T]:
        """Iterate over `items`, showing progress where a front end can."""
        return items

    def started(self, name: str) -> None:
        pass

    def finished(self, name: str, seconds: float) -> None:
        pass

    @property
    def total(self) -> float:
        return sum(seconds for _, seconds in self.timings)
