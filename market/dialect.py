"""What the market's code sees of its database, whichever engine holds it.

The SQL in market/*.py is written once, with `?` placeholders and syntax both SQLite and
PostgreSQL accept (`INSERT ... RETURNING`, `ON CONFLICT`); a PostgreSQL connection
(market.pgstore) translates the placeholders. What must differ is asked of the
connection here, never by importing an engine.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

import psycopg

# A SQLite file, or a PostgreSQL URL (libpq conninfo, e.g. postgresql:///market?host=/run/x).
Location = Path | str

URL_SCHEMES = ("postgresql://", "postgres://")

# A uniqueness or reference check refused a write, on either engine.
INTEGRITY_ERRORS = (sqlite3.IntegrityError, psycopg.IntegrityError)


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    @property
    def in_transaction(self) -> bool: ...

    def execute(self, sql: str, parameters: Any = ..., /) -> Cursor: ...

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> Cursor: ...

    def close(self) -> None: ...


def location(value: str) -> Location:
    """`--db` as given: a PostgreSQL URL stays a string, anything else is a SQLite path."""
    return value if value.startswith(URL_SCHEMES) else Path(value)


def is_postgres(conn: Connection) -> bool:
    return not isinstance(conn, sqlite3.Connection)


def credit_later(conn: Connection, credits: dict[int, int]) -> bool:
    """Hand the connection millicoins to add to accounts' balances (account: millicoins)
    before anything in the transaction reads or writes them again, and before it commits
    (PostgreSQL: market.pgstore.PgConnection.credit_later); False where the caller must
    update them now (SQLite, which updates a row in place; outside a transaction)."""
    defer = getattr(conn, "credit_later", None)
    return bool(defer(credits)) if defer is not None else False
