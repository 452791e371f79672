"""The market's store: one writer thread with group commit, on SQLite (WAL, fsync on
commit) or PostgreSQL (market.pgstore, each batch one SERIALIZABLE transaction).

Every change goes through `Store.write(op)`: the writer thread runs queued operations in
one transaction (run again with each in its own savepoint when one failed, so a failing
operation does not undo the others), commits with `synchronous=FULL`, and only then
answers their callers, those waiting on one event loop in one call onto it (not a wake-up
of the loop each). A caller therefore acknowledges nothing that is not on disk, and many
callers share one fsync. Reads run on the event loop's own connection and see only
committed data.

On PostgreSQL the writers of several market instances take turns (pgstore.writer_turn),
as SQLite's one writer does; each batch is still SERIALIZABLE, and one that lost a
serialization conflict all the same is run again from its start. A batch's statements go
out pipelined (market.pgpipe: queued, and sent together when a result is wanted): only a
read waits for the server, and an operation may return a value to read once the batch's
statements are all answered (market.later). A batch that waited for another instance's
turn takes in what queued meanwhile before its COMMIT (Store._run_batch).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import sqlite3
import stat
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar, overload

import psycopg

from market import pgstore
from market.dialect import Connection, Location, is_postgres
from market.errors import MarketError, Unavailable
from market.later import Later, resolved
from market.schema import migrate, migrate_postgres

T = TypeVar("T")
Operation = Callable[[Connection], Any]
# Who waits for an operation: a coroutine on an event loop (write), or a thread (write_sync).
Waiter = asyncio.Future[Any] | Future[Any]
# An operation's outcome: its waiter, its value and its error (None if it succeeded).
Outcome = tuple[Waiter, Any, BaseException | None]

# Operations drained into one transaction at most: bounds the latency one commit adds.
MAX_BATCH = 512
# Runs of one transaction after serialization conflicts before giving up (PostgreSQL).
MAX_ATTEMPTS = 50


class _OperationFailed(Exception):
    """An operation of a batch run without savepoints failed: the batch is run again."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


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


# The page cache of each SQLite connection, in KiB.
CACHE_KIB = 64 << 10


def connect(db: Location, *, writer: bool = False) -> Connection:
    """A connection in autocommit mode (transactions are explicit) with the market's pragmas;
    `writer` for the Store's writer (pgstore.connect)."""
    if isinstance(db, str):
        return pgstore.connect(db, writer=writer)
    conn = sqlite3.connect(db, isolation_level=None, check_same_thread=False, timeout=10)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA busy_timeout = 10000")
    # SQLite's default page cache (2 MB) is outgrown past some 10,000 queued jobs: the
    # writer's CPU per job leased in a batch was then 62-74 us, 18-21 with this
    # (scripts/bench_market_writer.py). Filled only as pages are read.
    conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
    return conn


def open_database(db: Location) -> Connection:
    """Open (creating if needed, private for SQLite) and migrate the market database at `db`."""
    if not isinstance(db, str):
        make_private(db)
    conn = connect(db)
    try:
        if isinstance(conn, sqlite3.Connection):
            migrate(conn)
        else:
            migrate_postgres(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def begin(conn: Connection) -> None:
    """Start a write transaction: SQLite takes its one write lock now; on PostgreSQL the
    writer's turn is taken before (pgstore.writer_turn), and SERIALIZABLE refuses a commit
    that anything else writing at the same time would break."""
    conn.execute("BEGIN ISOLATION LEVEL SERIALIZABLE" if is_postgres(conn) else "BEGIN IMMEDIATE")


def retrying(conn: Connection, run: Callable[[], T]) -> T:
    """`run` (which begins and ends its transaction), again while PostgreSQL reports a
    serialization conflict with another instance."""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            return run()
        except pgstore.RETRY_ERRORS:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if attempt == MAX_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


def transact(db: Location, op: Callable[[Connection], T]) -> T:
    """Run `op` in one write transaction on a connection of its own, for tools that run
    beside a live market (the operator's commands, the server's start-up)."""
    conn = open_database(db)

    def run() -> T:
        begin(conn)
        try:
            result = op(conn)
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    try:
        with pgstore.writer_turn(conn):
            return retrying(conn, run)
    finally:
        conn.close()


def _is_full(exc: BaseException) -> bool:
    if isinstance(exc, psycopg.errors.DiskFull):
        return True
    return isinstance(exc, sqlite3.OperationalError) and "full" in str(exc)


def _translate(exc: BaseException) -> BaseException:
    return StoreFull(f"the market's disk is full: {exc}") if _is_full(exc) else exc


class Store:
    """The database behind the market: `write()` for changes, `reader` for queries."""

    def __init__(self, db: Location) -> None:
        self.db = db
        open_database(db).close()
        self._reader = connect(db)
        # Instances sharing a PostgreSQL database wake each other's sellers.
        self._announcer = pgstore.Announcer(db) if isinstance(db, str) else None
        self._analyzer = pgstore.Analyzer(db) if isinstance(db, str) else None
        self._queue: queue.SimpleQueue[tuple[Operation, Waiter] | None] = queue.SimpleQueue()
        # Whether the writer's last batch waited for another instance's turn (PostgreSQL).
        self._contended = False
        self._thread = threading.Thread(target=self._run_writer, name="market-writer", daemon=True)
        self._thread.start()

    @overload
    async def write(self, op: Callable[[Connection], Later[T]]) -> T: ...
    @overload
    async def write(self, op: Callable[[Connection], T]) -> T: ...
    async def write(self, op: Callable[[Connection], Any]) -> Any:
        """Run `op` in a write transaction; return its result (the value of a Later) once
        the commit is on disk."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put((op, future))
        return await future

    @overload
    def write_sync(self, op: Callable[[Connection], Later[T]]) -> T: ...
    @overload
    def write_sync(self, op: Callable[[Connection], T]) -> T: ...
    def write_sync(self, op: Callable[[Connection], Any]) -> Any:
        """Like write(), for code outside the event loop (the admin commands, tests)."""
        future: Future[Any] = Future()
        self._queue.put((op, future))
        return future.result()

    @property
    def reader(self) -> Connection:
        """The connection for queries, connected again if the database went away."""
        if not pgstore.usable(self._reader):
            self._reader.close()
            self._reader = connect(self.db)
        return self._reader

    def announce(self) -> None:
        """Tell the other instances on this database that work may have appeared (their
        listeners look again anyway when they reconnect, so a lost one is no loss)."""
        if self._announcer is not None:
            with contextlib.suppress(Unavailable):
                self._announcer.announce(self.reader)

    async def listen(self, wake: Callable[[], None]) -> None:
        """Call `wake` whenever another instance announces work, until cancelled."""
        if self._announcer is not None:
            await self._announcer.listen(wake)

    def close(self) -> None:
        """Finish queued writes, then stop the writer and close the connections."""
        self._queue.put(None)
        self._thread.join()
        self._reader.close()
        if self._analyzer is not None:
            self._analyzer.close()

    def _run_writer(self) -> None:
        conn: Connection | None = None
        try:
            while True:
                batch = self._next_batch()
                if batch is None:
                    return
                try:
                    # After the database went away, connect again for the next batch.
                    if conn is None or not pgstore.usable(conn):
                        if conn is not None:
                            conn.close()
                        conn = None
                        conn = connect(self.db, writer=True)
                except Unavailable as exc:
                    _answer([(waiter, None, exc) for _, waiter in batch])
                    continue
                self._commit_batch(conn, batch)
        finally:
            if conn is not None:
                conn.close()

    def _next_batch(self) -> list[tuple[Operation, Waiter]] | None:
        """The next operations to run, as many as are queued (up to MAX_BATCH), or None
        once close() asked the writer to stop. An operation whose caller is gone (its
        request cancelled) is dropped; the rest can no longer be cancelled."""
        batch: list[tuple[Operation, Waiter]] = []
        while not batch:
            item = self._queue.get()
            if item is None:
                return None
            if _runnable(item[1]):
                batch.append(item)
        self._more(batch)
        return batch

    def _more(self, batch: list[tuple[Operation, Waiter]]) -> int:
        """Add to `batch` the operations queued now (up to MAX_BATCH in all), in their
        order; how many."""
        added = 0
        while len(batch) < MAX_BATCH:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._queue.put(None)  # close(): the writer stops after this batch
                break
            if _runnable(item[1]):
                batch.append(item)
                added += 1
        return added

    def _commit_batch(self, conn: Connection, batch: list[tuple[Operation, Waiter]]) -> None:
        try:
            # The turn is taken in the batch's pipeline (_run_batch), or by the isolated
            # run after it failed.
            with pgstore.writer_turn(conn, take=False):
                outcomes = self._run_batch_once(conn, batch)
        except Exception as exc:
            # The transaction is gone (a failed commit, or SQLite rolled it all back on a
            # full disk): none of the batch is kept, so none of it may be acknowledged.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            _answer([(waiter, None, _translate(exc)) for _, waiter in batch])
            return
        _answer(outcomes)

    def _run_batch_once(
        self, conn: Connection, batch: list[tuple[Operation, Waiter]]
    ) -> list[Outcome]:
        try:
            # Nearly every batch succeeds whole: run it without a savepoint per operation
            # (two statements each, a round trip apiece on PostgreSQL) ...
            return retrying(conn, lambda: self._run_batch(conn, batch, isolated=False))
        except _OperationFailed as failed:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if len(batch) == 1:
                return [(batch[0][1], None, failed.error)]
            # ... and only when one of its operations fails, run it again with each in a
            # savepoint, so the others are kept.
            return retrying(conn, lambda: self._run_batch(conn, batch, isolated=True))

    def _run_batch(
        self, conn: Connection, batch: list[tuple[Operation, Waiter]], *, isolated: bool
    ) -> list[Outcome]:
        outcomes: list[Outcome]
        if isolated:
            if not pgstore.held_turn(conn):
                pgstore.take_turn(conn)
            begin(conn)
            outcomes = [(future, *self._run_in_savepoint(conn, op)) for op, future in batch]
            conn.execute("COMMIT")
            return outcomes
        # On PostgreSQL the writes nobody reads are sent without waiting (pgstore.pipelined):
        # an operation's failing write may then be reported later, by another operation's
        # read or by the sync before COMMIT. Either fails the batch, which is run again
        # isolated, where each operation's errors are its own.
        with pgstore.pipelined(conn):
            # With several instances a batch that waited for another's turn takes in what
            # queued meanwhile (`batch` grows in place: a failure answers all of it) rather
            # than leave it a turn and a commit of its own, as small, after the next wait
            # (batches of 1-3 operations, then of 24, with 25 hosts an instance). While the
            # turns are contended the batch waits for its turn before it begins and takes
            # in what queued; otherwise (one instance) its statements go out with the lock
            # as before, and only a batch that turns out to have waited is extended, once,
            # before its COMMIT.
            turn = None
            if not pgstore.held_turn(conn):
                turn = pgstore.take_turn(conn)
                if self._contended:
                    self._contended = turn.waited()
                    self._more(batch)
                    turn = None
            begin(conn)
            outcomes = []
            try:
                for op, future in batch:
                    outcomes.append((future, op(conn), None))
                pgstore.sync(conn)
                if turn is not None:
                    self._contended = turn.waited()
                    if self._contended and self._more(batch):
                        for op, future in batch[len(outcomes) :]:
                            outcomes.append((future, op(conn), None))
                        pgstore.sync(conn)
                # Every statement is answered now: the values read Later cost no wait.
                outcomes = [(future, resolved(value), None) for future, value, _ in outcomes]
            except pgstore.RETRY_ERRORS:
                raise
            except Exception as exc:
                if not conn.in_transaction:
                    raise  # the whole transaction is gone (SQLite's full disk, a lost server)
                raise _OperationFailed(_translate(exc)) from exc
            if pgstore.failed(conn):
                # An operation caught its statement's error and went on: nothing may be kept.
                raise _OperationFailed(MarketError("an operation's statement failed"))
            conn.execute("COMMIT")
            pgstore.give_turn(conn)
        return outcomes

    @staticmethod
    def _run_in_savepoint(conn: Connection, op: Operation) -> tuple[Any, BaseException | None]:
        conn.execute("SAVEPOINT op")
        try:
            result = resolved(op(conn))
        except Exception as exc:
            if not conn.in_transaction or isinstance(exc, pgstore.RETRY_ERRORS):
                raise
            conn.execute("ROLLBACK TO op")
            conn.execute("RELEASE op")
            return None, _translate(exc)
        conn.execute("RELEASE op")
        return result, None


def _runnable(waiter: Waiter) -> bool:
    """Whether an operation's caller still waits for it (one whose request was cancelled
    is dropped); a thread's can no longer cancel it after this."""
    if isinstance(waiter, Future):
        return waiter.set_running_or_notify_cancel()
    return not waiter.cancelled()


def _answer(outcomes: list[Outcome]) -> None:
    """Hand each waiter its outcome: the coroutines of one event loop all in one call onto
    that loop (each call wakes the loop, and a batch holds many operations), threads
    directly."""
    loops: dict[asyncio.AbstractEventLoop, list[Outcome]] = {}
    for outcome in outcomes:
        waiter = outcome[0]
        if isinstance(waiter, Future):
            _settle([outcome])
        else:
            loops.setdefault(waiter.get_loop(), []).append(outcome)
    for loop, answers in loops.items():
        # A loop already closed has nobody left waiting.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_settle, answers)


def _settle(outcomes: list[Outcome]) -> None:
    for waiter, value, error in outcomes:
        if waiter.cancelled():
            continue  # its caller is gone: the operation was committed all the same
        if error is None:
            waiter.set_result(value)
        else:
            waiter.set_exception(error)
