"""The market's SQLite store: WAL, fsync on commit, and one writer thread with group commit.

Every change goes through `Store.write(op)`: the writer thread runs queued operations in
one transaction (each in its own savepoint, so one failing operation does not undo the
others), commits with `synchronous=FULL`, and only then resolves their futures. A caller
therefore acknowledges nothing that is not on disk, and many callers share one fsync.
Reads run on the event loop's own connection and see only committed data.
"""

from __future__ import annotations

import asyncio
import os
import queue
import sqlite3
import stat
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from market.errors import MarketError
from market.schema import migrate

T = TypeVar("T")
Operation = Callable[[sqlite3.Connection], Any]

# Operations drained into one transaction at most: bounds the latency one commit adds.
MAX_BATCH = 512


class StoreFull(RuntimeError):
    """The disk (or the database's size limit) is full: nothing of the failed write was kept."""


class ExposedDatabase(MarketError):
    """The database (accounts, key hashes, programs, results) is readable by other users."""


def make_private(path: Path) -> None:
    """Create the database file 0600 if it is missing (SQLite gives its -wal and -shm files
    the database's mode), and refuse one that other users may read or write."""
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        pass
    except OSError as exc:
        raise MarketError(f"cannot create the market database {path}: {exc.strerror}") from None
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            mode = stat.S_IMODE(file.stat().st_mode)
        except FileNotFoundError:
            continue
        if mode & 0o077:
            raise ExposedDatabase(
                f"{file} is open to other users (mode {mode:04o}) and holds the market's "
                f"accounts and results: run `chmod 600 {file}` and start again"
            )


def connect(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit) with the market's pragmas."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA busy_timeout = 10000")
    return conn


def open_database(path: Path) -> sqlite3.Connection:
    """Open (creating if needed, private) and migrate the market database at `path`."""
    make_private(path)
    conn = connect(path)
    migrate(conn)
    return conn


def transact(path: Path, op: Callable[[sqlite3.Connection], T]) -> T:
    """Run `op` in one write transaction on a connection of its own, for tools that run
    beside a live market (the operator's commands, the server's start-up)."""
    conn = open_database(path)
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = op(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result
    finally:
        conn.close()


def _is_full(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and "full" in str(exc)


def _translate(exc: BaseException) -> BaseException:
    return StoreFull(f"the market's disk is full: {exc}") if _is_full(exc) else exc


class Store:
    """The database behind the market: `write()` for changes, `reader` for queries."""

    def __init__(self, path: Path) -> None:
        self.path = path
        open_database(path).close()
        self.reader = connect(path)
        self._queue: queue.SimpleQueue[tuple[Operation, Future[Any]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run_writer, name="market-writer", daemon=True)
        self._thread.start()

    async def write(self, op: Callable[[sqlite3.Connection], T]) -> T:
        """Run `op` in a write transaction; return its result once the commit is on disk."""
        future: Future[T] = Future()
        self._queue.put((op, future))
        return await asyncio.wrap_future(future)

    def write_sync(self, op: Callable[[sqlite3.Connection], T]) -> T:
        """Like write(), for code outside the event loop (the admin commands, tests)."""
        future: Future[T] = Future()
        self._queue.put((op, future))
        return future.result()

    def close(self) -> None:
        """Finish queued writes, then stop the writer and close the connections."""
        self._queue.put(None)
        self._thread.join()
        self.reader.close()

    def _run_writer(self) -> None:
        conn = connect(self.path)
        try:
            while True:
                batch = self._next_batch()
                if batch is None:
                    return
                self._commit_batch(conn, batch)
        finally:
            conn.close()

    def _next_batch(self) -> list[tuple[Operation, Future[Any]]] | None:
        first = self._queue.get()
        if first is None:
            return None
        batch = [first]
        while len(batch) < MAX_BATCH:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._queue.put(None)
                break
            batch.append(item)
        return batch

    def _commit_batch(
        self, conn: sqlite3.Connection, batch: list[tuple[Operation, Future[Any]]]
    ) -> None:
        outcomes: list[tuple[Future[Any], Any, BaseException | None]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for op, future in batch:
                outcomes.append((future, *self._run_in_savepoint(conn, op)))
            conn.execute("COMMIT")
        except Exception as exc:
            # The transaction is gone (a failed commit, or SQLite rolled it all back on a
            # full disk): none of the batch is kept, so none of it may be acknowledged.
            if conn.in_transaction:
                conn.rollback()
            for _, future in batch:
                future.set_exception(_translate(exc))
            return
        for future, result, error in outcomes:
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)

    @staticmethod
    def _run_in_savepoint(
        conn: sqlite3.Connection, op: Operation
    ) -> tuple[Any, BaseException | None]:
        conn.execute("SAVEPOINT op")
        try:
            result = op(conn)
        except Exception as exc:
            if not conn.in_transaction:
                raise
            conn.execute("ROLLBACK TO op")
            conn.execute("RELEASE op")
            return None, _translate(exc)
        conn.execute("RELEASE op")
        return result, None
