"""The writer's pipeline on PostgreSQL (market.pgpipe): statements go out only when a result
is wanted, errors come back in order, prepared statements last as long as the connection,
a lost server is the market's 503, and the writers' turn taken in it is always given back."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import psycopg
import pytest

from market import pgstore
from market.dialect import INTEGRITY_ERRORS, Connection, Location
from market.errors import Unavailable
from market.store import Store
from tests.market.helpers import writer_turns

LOCK = 0x7069706574657374


@pytest.fixture
def market_backend() -> str:
    return "postgres"


@pytest.fixture
def writer(market_location: Location) -> Iterator[pgstore.PgConnection]:
    assert isinstance(market_location, str)
    conn = pgstore.connect(market_location, writer=True)
    conn.execute("CREATE TABLE t (id BIGINT PRIMARY KEY, data BYTEA)")
    yield conn
    conn.close()


def _waiting(url: str, pid: int) -> bool:
    """Whether the backend `pid` waits for an advisory lock."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE pid = %s AND locktype = 'advisory' "
            "AND NOT granted",
            (pid,),
        ).fetchone()
    return bool(row and row[0])


def test_queued_statements_reach_the_server_only_when_a_result_is_wanted(
    writer: pgstore.PgConnection, market_location: Location
) -> None:
    assert isinstance(market_location, str)
    pid = writer.raw.info.backend_pid
    with psycopg.connect(market_location, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (LOCK,))
        with writer.pipelined():
            taken = writer.execute("SELECT pg_advisory_lock(?), 7", (LOCK,))
            time.sleep(0.3)
            # Still in the writer's buffer: the server has not seen it, so nothing waits.
            assert not _waiting(market_location, pid)
            holder.execute("SELECT pg_advisory_unlock(%s)", (LOCK,))
            assert taken.fetchone()[1] == 7
            writer.execute("SELECT pg_advisory_unlock(?)", (LOCK,))


def test_an_error_is_raised_by_the_next_read_and_the_connection_goes_on(
    writer: pgstore.PgConnection,
) -> None:
    with pytest.raises(psycopg.errors.UniqueViolation), writer.pipelined():
        writer.execute("BEGIN")
        writer.execute("INSERT INTO t (id, data) VALUES (?, ?)", (1, b"a"))
        writer.execute("INSERT INTO t (id, data) VALUES (?, ?)", (1, b"b"))  # fails, unread
        writer.execute("SELECT count(*) FROM t").fetchone()
    assert writer.failed
    writer.execute("ROLLBACK")
    # Statements prepared or skipped in the failed pipeline run again.
    with writer.pipelined():
        writer.execute("BEGIN")
        writer.execute("INSERT INTO t (id, data) VALUES (?, ?)", (1, b"a"))
        counted = writer.execute("SELECT count(*) FROM t")
        writer.execute("COMMIT")
    assert counted.fetchone()[0] == 1


def test_prepared_statements_outlast_a_rollback(writer: pgstore.PgConnection) -> None:
    # psycopg drops every prepared statement of a connection after a ROLLBACK it runs
    # (DEALLOCATE ALL) once it prepared some of its own: the pipeline's would go with them.
    for _ in range(8):
        writer.execute("SELECT count(*) FROM t").fetchone()
    for _ in range(3):
        with writer.pipelined():
            writer.execute("BEGIN")
            counted = writer.execute("SELECT count(*) FROM t")
            assert counted.fetchone()[0] == 0
        writer.execute("ROLLBACK")


def test_a_batch_of_large_values_goes_out_and_is_answered(writer: pgstore.PgConnection) -> None:
    value = bytes(range(256)) * 4096  # 1 MiB each, more than the sockets' buffers
    with writer.pipelined():
        writer.execute("BEGIN")
        for n in range(24):
            writer.execute("INSERT INTO t (id, data) VALUES (?, ?)", (n, value))
        stored = writer.execute("SELECT count(*), sum(length(data)) FROM t")
        back = writer.execute("SELECT data FROM t WHERE id = ?", (23,))
        writer.execute("COMMIT")
    assert stored.fetchone() == (24, 24 * len(value))
    assert back.fetchone()[0] == value


def test_a_lost_server_is_unavailable(
    writer: pgstore.PgConnection, market_location: Location
) -> None:
    assert isinstance(market_location, str)
    pid = writer.raw.info.backend_pid
    with pytest.raises(Unavailable), writer.pipelined():
        writer.execute("BEGIN")
        with psycopg.connect(market_location, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        time.sleep(0.2)
        writer.execute("SELECT count(*) FROM t").fetchone()
    assert not writer.usable


def test_the_writers_turn_is_given_back_after_each_batch_failed_or_not(
    market_location: Location,
) -> None:
    assert isinstance(market_location, str)
    store = Store(market_location)

    def insert(key: str) -> Callable[[Connection], str]:
        def op(conn: Connection) -> str:
            conn.execute("INSERT INTO settings (key, value) VALUES (?, 'x')", (key,))
            return key

        return op

    def conflict(conn: Connection) -> None:
        raise psycopg.errors.SerializationFailure("as if another instance wrote first")

    try:
        assert store.write_sync(insert("a")) == "a"
        assert writer_turns(market_location, granted=True) == 0
        # A failing operation: its batch is run again, each operation in a savepoint.
        with pytest.raises(INTEGRITY_ERRORS):
            store.write_sync(insert("a"))
        assert writer_turns(market_location, granted=True) == 0
        # A conflict every time: the batch is run again until the store gives up.
        with pytest.raises(psycopg.errors.SerializationFailure):
            store.write_sync(conflict)
        assert writer_turns(market_location, granted=True) == 0
        assert store.write_sync(insert("b")) == "b"
        assert writer_turns(market_location, granted=True) == 0
    finally:
        store.close()
