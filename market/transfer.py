"""Moving a whole market between databases (SQLite to PostgreSQL and back): `export`
writes every row of every table as JSON lines, `load` reads them into an empty database.

The file streams: a header line, then per table a line naming its columns and one line per
row (a JSON array; bytes as {"base64": ...}), and a footer counting the rows of each table,
so a cut-off file is refused instead of half-loaded. Ids are kept as they are (a job's id is
in its buyer's hands, a lease's in a seller's), and on PostgreSQL the identity sequences are
moved past them so that new rows do not collide. The load is one transaction that ends by
checking the coin ledger: a market that does not add up is not loaded at all.
"""

from __future__ import annotations

import base64
import json
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

import psycopg

from market import ledger
from market.dialect import INTEGRITY_ERRORS, Connection, Location, is_postgres
from market.errors import MarketError
from market.pgstore import PgConnection
from market.schema import SCHEMA_VERSION
from market.store import begin, open_database

FORMAT = "cpushare-market"

# Every table, parents before the tables that refer to them, with the order its rows are
# written in (the primary key).
TABLES = (
    ("settings", "key"),
    ("accounts", "id"),
    ("api_keys", "id"),
    ("web_sessions", "id_hash"),
    ("orders", "id"),
    ("hosts", "id"),
    ("programs", "sha256"),
    ("program_owners", "sha256, account_id"),
    ("batches", "id"),
    ("jobs", "id"),
    ("leases", "id"),
    ("results", "id"),
    ("trust", "host_id, program"),
    ("transfers", "id"),
)
# Tables whose integer id PostgreSQL hands out from an identity sequence.
IDENTITY_TABLES = ("accounts", "api_keys", "batches", "jobs", "leases", "results", "transfers")
# Rows sent to the database in one executemany().
CHUNK = 500
# What a row that does not fit its table raises, on either engine.
BAD_ROW_ERRORS = (
    *INTEGRITY_ERRORS,
    sqlite3.ProgrammingError,
    psycopg.ProgrammingError,
    psycopg.DataError,
    ValueError,
    TypeError,
    KeyError,
)


class TransferError(MarketError):
    """The file or the target database cannot take part in a transfer."""


def _tables(conn: Connection) -> set[str]:
    if is_postgres(conn):
        sql = "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        return {row[0] for row in conn.execute(sql)} - {"schema_version"}
    sql = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    return {row[0] for row in conn.execute(sql)}


def _check_tables(conn: Connection) -> None:
    """Refuse a database with a table this module does not know: it would not be moved."""
    unknown = _tables(conn) - {name for name, _ in TABLES}
    if unknown:
        raise TransferError(
            f"the database holds tables this market does not know ({', '.join(sorted(unknown))})"
            ": use the market version that wrote it"
        )


def _rows(conn: Connection, sql: str) -> Iterator[tuple[Any, ...]]:
    """The rows of a query, fetched a few at a time (a PostgreSQL client cursor would hold
    all of them in memory)."""
    if isinstance(conn, PgConnection):
        yield from conn.stream(sql)
    else:
        yield from conn.execute(sql)


def _encode(value: Any) -> Any:
    if isinstance(value, bytes | memoryview):
        return {"base64": base64.b64encode(value).decode()}
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        return base64.b64decode(value["base64"])
    return value


def _columns(conn: Connection, table: str) -> list[str]:
    if is_postgres(conn):
        sql = (
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = ? ORDER BY ordinal_position"
        )
        return [row[0] for row in conn.execute(sql, (table,))]
    return [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]


def _line(doc: Any) -> str:
    return json.dumps(doc, separators=(",", ":"), allow_nan=False) + "\n"


def export(db: Location, out: TextIO) -> dict[str, int]:
    """Write the market at `db` to `out`, as one consistent snapshot (a live market may go
    on serving meanwhile); return the rows written per table."""
    if isinstance(db, Path) and not db.exists():
        raise TransferError(f"no market database {db}: give --db the market to export")
    conn = open_database(db)
    try:
        # One snapshot for every table: a transfer and the result it pays go together.
        conn.execute(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY" if is_postgres(conn) else "BEGIN"
        )
        _check_tables(conn)
        out.write(_line({"format": FORMAT, "schema": SCHEMA_VERSION}))
        counts: dict[str, int] = {}
        for table, key in TABLES:
            columns = _columns(conn, table)
            out.write(_line({"table": table, "columns": columns}))
            count = 0
            for row in _rows(conn, f"SELECT {', '.join(columns)} FROM {table} ORDER BY {key}"):
                out.write(_line([_encode(value) for value in row]))
                count += 1
            counts[table] = count
        out.write(_line({"end": counts}))
        conn.execute("COMMIT")
        return counts
    finally:
        conn.close()


def _header(lines: Iterator[str]) -> None:
    first = next(lines, "")
    try:
        doc = json.loads(first)
    except json.JSONDecodeError:
        doc = None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise TransferError("not a market export: make one with `livecd market export`")
    if doc.get("schema") != SCHEMA_VERSION:
        raise TransferError(
            f"the export has schema version {doc.get('schema')}, this market {SCHEMA_VERSION}: "
            "export and import with the same market version"
        )


def _refuse_non_empty(conn: Connection) -> None:
    held = [
        table for table, _ in TABLES if conn.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone()
    ]
    if held:
        raise TransferError(
            f"the target database already holds a market (rows in {', '.join(held)}): "
            "import into a new, empty database"
        )


class _Loader:
    """Inserts the rows of one table after another, CHUNK at a time."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.order = iter(TABLES)
        self.table = ""
        self.sql = ""
        self.pending: list[list[Any]] = []
        self.counts: dict[str, int] = {}

    def start(self, table: Any, columns: Any) -> None:
        self.flush()
        expected = next(self.order, (None, ""))[0]
        if table != expected:
            raise TransferError(f"the export names table {table!r} where {expected!r} belongs")
        known = set(_columns(self.conn, table))
        if not isinstance(columns, list) or not columns or not set(columns) <= known:
            raise TransferError(f"the export's columns of {table} do not fit this market")
        self.table = table
        self.counts[table] = 0
        marks = ", ".join("?" * len(columns))
        self.sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"

    def row(self, values: list[Any]) -> None:
        if not self.table:
            raise TransferError("the export has a row before its first table")
        self.pending.append([_decode(value) for value in values])
        self.counts[self.table] += 1
        if len(self.pending) >= CHUNK:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.conn.executemany(self.sql, self.pending)
            self.pending = []


def _load_rows(conn: Connection, lines: Iterator[str]) -> dict[str, int]:
    loader = _Loader(conn)
    for number, text in enumerate(lines, start=2):
        try:
            doc = json.loads(text)
        except json.JSONDecodeError:
            raise TransferError(f"line {number} of the export is not JSON") from None
        if isinstance(doc, list):
            loader.row(doc)
        elif isinstance(doc, dict) and "table" in doc:
            loader.start(doc["table"], doc.get("columns"))
        elif isinstance(doc, dict) and "end" in doc:
            loader.flush()
            if doc["end"] != loader.counts:
                raise TransferError("the export's rows do not match its own count")
            return loader.counts
        else:
            raise TransferError(f"line {number} of the export is neither a table nor a row")
    raise TransferError("the export ends before its last line: it was cut off, export again")


def _advance_identities(conn: Connection) -> None:
    """Let PostgreSQL hand out ids after the imported ones."""
    for table in IDENTITY_TABLES:
        conn.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
            f"coalesce(max(id), 0) + 1, false) FROM {table}"
        )


def load(db: Location, lines: Iterable[str]) -> dict[str, int]:
    """Import an export into the empty market database at `db` (created if missing), all
    of it or nothing; return the rows loaded per table."""
    stream = iter(lines)
    _header(stream)
    # A SQLite file this import creates goes again if the import fails.
    created = isinstance(db, Path) and not db.exists()
    try:
        return _load(db, stream)
    except BaseException:
        if created:
            assert isinstance(db, Path)
            for file in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
                file.unlink(missing_ok=True)
        raise


def _load(db: Location, stream: Iterator[str]) -> dict[str, int]:
    conn = open_database(db)
    try:
        begin(conn)
        try:
            _refuse_non_empty(conn)
            try:
                counts = _load_rows(conn, stream)
            except BAD_ROW_ERRORS as exc:
                detail = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
                raise TransferError(f"the export does not fit this market: {detail}") from None
            if is_postgres(conn):
                _advance_identities(conn)
            problems = ledger.check(conn)
            if problems:
                raise TransferError(
                    "the imported ledger does not add up: " + "; ".join(problems[:5])
                )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return counts
    finally:
        conn.close()
