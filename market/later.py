"""A value an operation of the store reads once all its batch's statements are answered.

On PostgreSQL the writer's statements go out pipelined, and an operation waits for the
server only when it reads a result. An operation whose caller needs a row (a lease's id,
say) but whose own later statements do not can return a `Later` instead: the store
(market.store) reads it after the batch's sync, before COMMIT, so that row costs no wait
of its own. Anything else may call `value()` at once. On SQLite, whose statements cost
no round trip, `rows` reads them at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from market.dialect import Connection, Cursor, is_postgres

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


def rows(conn: Connection, cursor: Cursor) -> Later[list[Any]]:
    """The rows of a statement just run: Later on PostgreSQL; read at once on SQLite, where
    reading costs no wait and a statement not read to its end cannot run again meanwhile
    (the next run of the same SQL would be prepared anew)."""
    if is_postgres(conn):
        return Later(cursor.fetchall)
    now = cursor.fetchall()
    return Later(lambda: now)
