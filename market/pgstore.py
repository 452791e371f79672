"""The market's PostgreSQL connections: the same `Connection` the SQL in market/*.py uses
on SQLite, over psycopg 3.

`?` placeholders become psycopg's `%s`. Values are bound on the server, so statements the
market repeats are prepared once per connection (psycopg does it after a few runs): the
SQL therefore gives a NULL parameter its type (`CAST(? AS TEXT)`) where PostgreSQL could
not infer one.

The writer runs its batches `pipelined` (market.pgpipe): a statement is queued without
waiting for its answer until something reads a result (a row, a row count) or the batch
syncs, so the UPDATEs and INSERTs nobody reads ride along with the next read instead of
costing a round trip each. An error of such a statement is therefore raised by that later
read or sync.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import psycopg
from psycopg.adapt import Buffer, Loader

from market import pgpipe
from market.dialect import Connection
from market.errors import Unavailable

log = logging.getLogger("market")

_IN_TRANSACTION = (
    psycopg.pq.TransactionStatus.ACTIVE,
    psycopg.pq.TransactionStatus.INTRANS,
    psycopg.pq.TransactionStatus.INERROR,
)

# The server going away: the connection is lost, though psycopg may not know it yet.
_SHUTTING_DOWN = (
    psycopg.errors.AdminShutdown,
    psycopg.errors.CrashShutdown,
    psycopg.errors.CannotConnectNow,
)

# Errors after which the transaction must be run again from its start.
RETRY_ERRORS = (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected)


class _NumberLoader(Loader):
    """sum() over BIGINT columns is NUMERIC in PostgreSQL; the market counts in integer
    millicoins and seconds as floats, as SQLite returns them."""

    def load(self, data: Buffer) -> int | float:
        text = bytes(data)
        return int(text) if text.lstrip(b"-").isdigit() else float(text)


@functools.lru_cache(maxsize=1024)
def _translate(sql: str) -> str:
    if "%" in sql:
        raise ValueError(f"SQL for both engines must not use '%': {sql!r}")
    return sql.replace("?", "%s")


class PgConnection:
    """One PostgreSQL connection in autocommit mode: transactions are explicit, as on SQLite."""

    def __init__(self, url: str, *, pipelines: bool = False) -> None:
        self.raw: psycopg.Connection[Any] = psycopg.Connection.connect(url, autocommit=True)
        self.raw.adapters.register_loader("numeric", _NumberLoader)
        if pipelines:
            # The pipelines prepare their statements themselves (market.pgpipe); psycopg's
            # own would be dropped, theirs with them (DEALLOCATE ALL), after every ROLLBACK.
            self.raw.prepare_threshold = None
        self._pipeline: pgpipe.Pipeline | None = None
        # The writers' turns (writer_turn) this connection holds: each one taken is given back.
        self.turns = 0
        # The statements prepared on this connection by its pipelines (market.pgpipe).
        self._prepared: dict[tuple[bytes, tuple[int, ...]], bytes] = {}
        # Millicoins to add to accounts' balances, by account (credit_later).
        self._credits: dict[int, int] = {}

    @property
    def in_transaction(self) -> bool:
        if self._pipeline is not None:
            # libpq learns a pipeline's transaction state only when it syncs; the store
            # opens one around its transaction, which lasts as long as the connection.
            return self.usable
        # A lost connection (UNKNOWN) has no transaction left to roll back.
        return self.raw.info.transaction_status in _IN_TRANSACTION

    @property
    def usable(self) -> bool:
        return not self.raw.broken and not self.raw.closed

    @property
    def failed(self) -> bool:
        """The open transaction hit an error: it can only be rolled back."""
        return self.raw.info.transaction_status == psycopg.pq.TransactionStatus.INERROR

    def credit_later(self, credits: dict[int, int]) -> bool:
        """Add millicoins to accounts' balances (account: millicoins) once, before the
        transaction's next statement that names the accounts table, its next savepoint, its
        sync or its COMMIT; a rollback drops them with the rest. False (nothing done) outside
        a transaction: the caller updates the balances itself.

        Every result pays its buyer's refund and its seller: one batch of the writer updated
        the same few account rows once per result, and PostgreSQL walks all of a row's
        versions written by the transaction to update it again (a third of the server's
        work in a batch of 100 results). One UPDATE a batch writes each row once."""
        if not self.in_transaction:
            return False
        for account, millicoins in credits.items():
            self._credits[account] = self._credits.get(account, 0) + millicoins
        return True

    def _before(self, sql: str) -> None:
        """Credits held (credit_later) dropped with a rollback, or applied before `sql`."""
        head = sql.lstrip()[:9].upper()
        if head.startswith("ROLLBACK"):
            # A savepoint applied what came before it: all held since is undone.
            self._credits.clear()
        elif "accounts" in sql or head.startswith(("COMMIT", "SAVEPOINT", "RELEASE")):
            self.apply_credits()

    def apply_credits(self) -> None:
        """Apply the credits held (credit_later) now, in one statement."""
        if not self._credits:
            return
        credits, self._credits = self._credits, {}
        accounts = sorted(credits)
        self.execute(
            "UPDATE accounts SET millicoins = accounts.millicoins + c.millicoins "
            "FROM (SELECT unnest(CAST(? AS BIGINT[])) AS id, "
            "unnest(CAST(? AS BIGINT[])) AS millicoins) AS c WHERE accounts.id = c.id",
            (accounts, [credits[account] for account in accounts]),
        )

    def execute(self, sql: str, parameters: Any = (), /) -> psycopg.Cursor[Any] | pgpipe.Statement:
        if self._credits:
            self._before(sql)
        if self._pipeline is not None:
            try:
                return self._pipeline.execute(sql, parameters)
            except psycopg.OperationalError as exc:
                self.check_lost(exc)
                raise
        # No `with self._lost()` here: the market's hottest call, and entering it costs as
        # much as a tenth of the call.
        cursor = self.raw.cursor()
        try:
            cursor.execute(_translate(sql), parameters or None)
        except psycopg.OperationalError as exc:
            self.check_lost(exc)
            raise
        return cursor

    def executemany(
        self, sql: str, parameters: Iterable[Any], /
    ) -> psycopg.Cursor[Any] | pgpipe.Statements:
        if self._credits:
            self._before(sql)
        if self._pipeline is not None:
            pipeline = self._pipeline
            with self._lost():
                return pgpipe.Statements([pipeline.execute(sql, values) for values in parameters])
        with self._lost():
            cursor = self.raw.cursor()
            cursor.executemany(_translate(sql), parameters)
        return cursor

    def stream(self, sql: str, rows: int = 1000) -> Iterator[tuple[Any, ...]]:
        """The rows of a query, `rows` at a time from a server-side cursor, for results
        larger than memory (a whole market's export); needs an open transaction."""
        if self._credits:
            self._before(sql)
        with self._lost(), self.raw.cursor(name=f"stream_{secrets.token_hex(4)}") as cursor:
            cursor.itersize = rows
            cursor.execute(_translate(sql))
            yield from cursor

    @contextlib.contextmanager
    def pipelined(self) -> Iterator[None]:
        """Send statements without waiting for their answers until a result is read (or
        sync() is called); leaving syncs (its errors are raised unless one already is).
        Only on a connection made for `pipelines`."""
        if self.raw.prepare_threshold is not None:
            raise RuntimeError("pipelined() needs a connection made with pipelines=True")
        with self._lost():
            pipeline = pgpipe.Pipeline(self.raw, self._prepared, self.check_lost)
            self._pipeline = pipeline
            try:
                yield
            except BaseException:
                self._pipeline = None
                with contextlib.suppress(psycopg.Error):
                    pipeline.close()
                raise
            self._pipeline = None
            pipeline.close()

    def sync(self) -> None:
        """Apply the credits held, wait for every statement sent so far: raise the first
        error among them."""
        self.apply_credits()
        if self._pipeline is not None:
            with self._lost():
                self._pipeline.sync()

    def sync_later(self) -> None:
        """In a pipeline, end the implicit transaction of the statements sent so far
        without waiting (pgpipe.Pipeline.sync_later); nothing otherwise."""
        if self._pipeline is not None:
            with self._lost():
                self._pipeline.sync_later()

    @contextlib.contextmanager
    def _lost(self) -> Iterator[None]:
        """A lost connection (the server restarting, say) as the market's 503."""
        try:
            yield
        except psycopg.OperationalError as exc:
            self.check_lost(exc)
            raise

    def check_lost(self, exc: psycopg.OperationalError) -> None:
        """Raise `exc` as the market's 503 if it lost the connection (or the server said it
        is shutting down: the connection may not know it is lost yet)."""
        if not self.usable or isinstance(exc, _SHUTTING_DOWN):
            raise Unavailable(f"the market database is unavailable: {_first_line(exc)}") from exc

    def close(self) -> None:
        self.raw.close()


@contextlib.contextmanager
def pipelined(conn: Connection) -> Iterator[None]:
    """PgConnection.pipelined(); nothing on SQLite, whose statements cost no round trip."""
    if isinstance(conn, PgConnection):
        with conn.pipelined():
            yield
    else:
        yield


def sync(conn: Connection) -> None:
    """PgConnection.sync(); nothing on SQLite."""
    if isinstance(conn, PgConnection):
        conn.sync()


def failed(conn: Connection) -> bool:
    """PgConnection.failed; False on SQLite, which keeps no failed transaction open."""
    return isinstance(conn, PgConnection) and conn.failed


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def usable(conn: Connection) -> bool:
    """False for a PostgreSQL connection the server has gone away from."""
    return not isinstance(conn, PgConnection) or conn.usable


# pg_advisory_lock key of the writers' turn (writer_turn).
WRITER_LOCK = 0x6D61726B7772


@contextlib.contextmanager
def writer_turn(conn: Connection, *, take: bool = True) -> Iterator[None]:
    """Let the writers of all instances on one database take turns, one transaction each.

    Overlapping SERIALIZABLE transactions of two instances nearly always collide (every
    result pays the same few accounts, every lease reads the head of the same queue), and
    the loser runs its whole batch again: measured, two instances did less than one. Taking
    turns costs two statements a batch (in the store's pipeline, sent with BEGIN and COMMIT:
    no wait of their own, but for the wait for another writer's turn, which the store, told
    of it by take_turn, spends gathering its batch), and the loser waits instead of working
    twice. The
    lock is taken before BEGIN, so that the transaction's snapshot is taken after the
    previous writer committed; a writer that dies (its process killed, say) loses its turn
    with its connection. Nothing on SQLite, whose BEGIN IMMEDIATE takes turns already.

    Without `take` the turn is taken inside (take_turn, give_turn: the store's pipelined
    batches, whose lock and unlock then ride with BEGIN and COMMIT); either way, leaving
    rolls back what is left open and gives back every turn still held.
    """
    if not isinstance(conn, PgConnection):
        yield
        return
    if take:
        take_turn(conn)
    try:
        yield
    finally:
        if not conn.usable:
            conn.turns = 0  # given back with the connection
        else:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            while conn.turns:
                conn.execute("SELECT pg_advisory_unlock(?)", (WRITER_LOCK,))
                conn.turns -= 1


def held_turn(conn: Connection) -> bool:
    """Whether this writer holds the writers' turn now (always False on SQLite)."""
    return isinstance(conn, PgConnection) and conn.turns > 0


# The writers' turn taken at once if it is free, else waited for; true if it was waited for.
# (CASE evaluates its branches in order and only as needed.)
_TAKE_TURN = (
    "SELECT CASE WHEN pg_try_advisory_lock(?) THEN false "
    "ELSE CAST(pg_advisory_lock(?) AS TEXT) = '' END"
)


class Turn:
    """The writers' turn asked for (take_turn): `waited()` waits for it if it is not held
    yet, and says whether another writer held it, so that it was waited for."""

    def __init__(self, lock: Any) -> None:
        self._lock = lock  # the lock statement (its cursor outside a pipeline); None: SQLite
        self._waited: bool | None = None

    def waited(self) -> bool:
        if self._waited is None:
            row = None if self._lock is None else self._lock.fetchone()
            self._waited = bool(row and row[0])
        return self._waited


def take_turn(conn: Connection) -> Turn:
    """Take the writers' turn (writer_turn), ahead of BEGIN; in a pipeline the lock is sent
    with what follows it, in its own implicit transaction, and the statements sent after it
    run once it is held. Nothing on SQLite (its Turn never waited)."""
    if not isinstance(conn, PgConnection):
        return Turn(None)
    lock = conn.execute(_TAKE_TURN, (WRITER_LOCK, WRITER_LOCK))
    conn.turns += 1
    conn.sync_later()
    return Turn(lock)


def give_turn(conn: Connection) -> None:
    """Give the writers' turn back, behind COMMIT; in a pipeline the unlock runs in its own
    implicit transaction, so a COMMIT refused (a serialization conflict) does not skip it."""
    if isinstance(conn, PgConnection):
        conn.sync_later()
        conn.execute("SELECT pg_advisory_unlock(?)", (WRITER_LOCK,))
        conn.turns -= 1


def connect(url: str, *, writer: bool = False) -> PgConnection:
    """A connection; the `writer`'s runs its batches pipelined (PgConnection.pipelined), and
    its prepared statements always run their generic plan.

    The writer's statements are the market's hot paths, each with one good plan whatever
    its values (an index walk by key, or the lease query's walk of the ready jobs in order).
    Left to choose, PostgreSQL planned the lease query anew on every run, since its cost
    depends on the seller's limits: a third of a millisecond each time.

    Nor does the writer merge-join: its statements join a few rows, named by key, with
    tables as long as the market's history, and a merge join reads the longer side from
    its first key. PostgreSQL expected it to stop where the keys stood at the table's last
    ANALYZE; but job ids only grow, and each batch of results read every job below its
    leases' (20,000 rows for 50 results once 20,000 jobs were queued) where a lookup by
    key per lease reads 50.
    """
    try:
        conn = PgConnection(url, pipelines=writer)
        if writer:
            conn.execute("SET plan_cache_mode = force_generic_plan")
            conn.execute("SET enable_mergejoin = off")
        return conn
    except psycopg.OperationalError as exc:
        message = _first_line(exc)
        raise Unavailable(f"cannot connect to the market database: {message}") from None


# The channel on which instances sharing a database announce that work may have appeared.
CHANNEL = "market_work"
# Wait before listening again after the database went away (a restart, say).
RELISTEN_SECONDS = 0.5


class Announcer:
    """Wakes the long-polling sellers of every other instance on the same database
    (LISTEN/NOTIFY) when this one sees work appear, as the in-process wake-up does."""

    def __init__(self, url: str) -> None:
        self.url = url
        # A payload of our own, so that an instance does not wake its sellers twice.
        self.instance = secrets.token_hex(8)

    def announce(self, conn: Connection) -> None:
        conn.execute("SELECT pg_notify(?, ?)", (CHANNEL, self.instance))

    async def listen(self, wake: Callable[[], None]) -> None:
        """Call `wake` on each other instance's announcement, until cancelled."""
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    # Announcements made while nobody listened are lost: look again.
                    wake()
                    async for note in conn.notifies():
                        if note.payload != self.instance:
                            wake()
            except psycopg.OperationalError as exc:
                log.warning("not hearing other instances until the database is back: %s", exc)
                await asyncio.sleep(RELISTEN_SECONDS)


# How often statistics are looked at, and how many changed rows (beyond as many as the
# table holds) make them stale.
ANALYZE_EVERY = 1.0
ANALYZE_ROWS = 500
# pg_advisory_lock key held by the one Analyzer at work on a database.
ANALYZER_LOCK = 0x6D61726B616E
# The tables changed, since their last ANALYZE, by more rows than they held then (reltuples:
# -1 for a table never analyzed) and ANALYZE_ROWS more. Not n_live_tup, which counts the
# rows inserted since as well: a table only inserted into (results) was then never stale,
# and the writer's plans, made while it was nearly empty, scanned it whole for every
# lookup by key (the server's CPU per round trip grew with every result stored).
_STALE = (
    "SELECT s.relname FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid "
    "WHERE s.n_mod_since_analyze > %s + greatest(c.reltuples, 0)"
)


class Analyzer:
    """Keeps the planner's statistics as current as the queue is.

    Autovacuum looks once a minute; a market that receives a burst of jobs in a fresh or
    quiet database would plan its lease query for an empty table until then (a sort of
    the whole queue per lease instead of one index step). Checking every second costs
    one small query; ANALYZE runs only on the tables that changed by as many rows as they
    held when last analyzed (and ANALYZE_ROWS; _STALE): what moves a plan is a table's size
    changing severalfold, and
    ANALYZE reads up to 30,000 rows of a table. With a tenth of the table, a busy market
    analyzed jobs, leases, results and transfers every second: 9 % of the server's CPU in
    scripts/bench_market.py.

    One Analyzer works per database, the one holding ANALYZER_LOCK (given back with its
    connection); the others' only statement is a try for that lock each second. Every
    instance's looked and, past each doubling of a table, analyzed it too, often at once.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="market-analyze", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        working = False
        while not self._stop.wait(ANALYZE_EVERY):
            try:
                if conn is None or conn.broken:
                    conn = psycopg.Connection.connect(self.url, autocommit=True)
                    working = False
                if not working:
                    held = conn.execute(
                        "SELECT pg_try_advisory_lock(%s)", (ANALYZER_LOCK,)
                    ).fetchone()
                    working = held is not None and bool(held[0])
                    if not working:
                        continue
                stale = conn.execute(_STALE, (ANALYZE_ROWS,)).fetchall()
                for (table,) in stale:
                    conn.execute(
                        psycopg.sql.SQL("ANALYZE {}").format(psycopg.sql.Identifier(table))
                    )
            except psycopg.Error as exc:
                log.warning("cannot refresh the planner's statistics: %s", _first_line(exc))
        if conn is not None:
            conn.close()
