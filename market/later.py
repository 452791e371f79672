"""A value an operation of the store reads once all its batch's statements are answered.

On PostgreSQL the writer's statements go out pipelined, and an operation waits for the
server only when it reads a result. An operation whose caller needs a row (a lease's id,
say) but whose own later statements do not can return a `Later` instead: the store
(market.store) reads it after the batch's sync, before COMMIT, so that row costs no wait
of its own. Anything else may call `value()` at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Later(Generic[T]):
    """`read()`, called once, when the value is wanted."""

    def __init__(self, read: Callable[[], T]) -> None:
        self._read = read

    def value(self) -> T:
        return self._read()


def resolved(value: object) -> object:
    """The value of a Later; anything else as it is."""
    return value.value() if isinstance(value, Later) else value
