"""PostgreSQL: the writes queued while the store's writer waits for the writers' turn (held
by another instance) join the batch it was waiting with: one transaction, in their order,
acknowledged only once committed; close() meanwhile still finishes them and stops."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from polling import until

from market import pgstore
from market.dialect import Connection, Location
from market.store import Store
from tests.market.helpers import writer_turns

pytestmark = pytest.mark.parametrize("market_backend", ["postgres"])


class Writes:
    """Writes of a store, each in a thread of its own: the transaction each ran in and the
    order the writer ran them in."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.order: list[int] = []
        self.transactions: dict[int, int] = {}
        self.threads: list[threading.Thread] = []

    def _op(self, n: int) -> Callable[[Connection], int]:
        def op(conn: Connection) -> int:
            self.order.append(n)
            conn.execute("INSERT INTO settings (key, value) VALUES (?, 'v')", (f"w{n}",))
            return int(conn.execute("SELECT txid_current()").fetchone()[0])

        return op

    def start(self, n: int) -> None:
        def run() -> None:
            self.transactions[n] = self.store.write_sync(self._op(n))

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self.threads.append(thread)

    def join(self) -> None:
        for thread in self.threads:
            thread.join(timeout=60)
        assert not any(t.is_alive() for t in self.threads), "a write hung"


@pytest.fixture
def turn_held(market_location: Location) -> Iterator[psycopg.Connection[Any]]:
    """A connection holding the writers' turn, as another instance's writer in its batch."""
    assert isinstance(market_location, str)
    with psycopg.connect(market_location, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (pgstore.WRITER_LOCK,))
        yield other


def _committed(url: str) -> set[str]:
    with psycopg.connect(url, autocommit=True) as conn:
        return {str(r[0]) for r in conn.execute("SELECT key FROM settings").fetchall()}


def test_writes_queued_during_the_wait_for_the_turn_join_the_waiting_batch(
    market_location: Location, turn_held: psycopg.Connection[Any]
) -> None:
    """Twice: the first batch sends its statements with the lock and is extended after
    them; the second, the turns being contended since, waits for its turn before BEGIN."""
    assert isinstance(market_location, str)
    store = Store(market_location)
    try:
        for first in (0, 10):
            if first:
                turn_held.execute("SELECT pg_advisory_lock(%s)", (pgstore.WRITER_LOCK,))
            writes = Writes(store)
            writes.start(first)
            until(
                lambda: writer_turns(market_location, granted=False) == 1,
                "the wait for the turn",
                30,
                0.01,
            )
            for n in range(first + 1, first + 4):
                writes.start(n)
            until(lambda: store._queue.qsize() == 3, "the later writes queued", 30, 0.01)
            assert not writes.transactions
            assert not {f"w{n}" for n in range(first, first + 4)} & _committed(market_location)
            turn_held.execute("SELECT pg_advisory_unlock(%s)", (pgstore.WRITER_LOCK,))
            writes.join()
            assert len(set(writes.transactions.values())) == 1, writes.transactions
            assert writes.order[0] == first
            assert sorted(writes.order) == list(range(first, first + 4))
        assert _committed(market_location) == {f"w{n}" for n in (0, 1, 2, 3, 10, 11, 12, 13)}
    finally:
        store.close()


def test_close_while_the_writer_waits_for_the_turn_finishes_the_batch_and_stops(
    market_location: Location, turn_held: psycopg.Connection[Any]
) -> None:
    assert isinstance(market_location, str)
    store = Store(market_location)
    writes = Writes(store)
    writes.start(0)
    until(
        lambda: writer_turns(market_location, granted=False) == 1, "the wait for the turn", 30, 0.01
    )
    writes.start(1)
    until(lambda: store._queue.qsize() == 1, "the later write queued", 30, 0.01)
    closing = threading.Thread(target=store.close, daemon=True)
    closing.start()
    until(lambda: store._queue.qsize() == 2, "the writer asked to stop", 30, 0.01)
    turn_held.execute("SELECT pg_advisory_unlock(%s)", (pgstore.WRITER_LOCK,))
    writes.join()
    closing.join(timeout=60)
    assert not closing.is_alive(), "close() hung"
    assert writes.transactions[0] == writes.transactions[1]
    assert _committed(market_location) == {"w0", "w1"}


def test_a_failing_write_that_joined_the_waiting_batch_fails_alone(
    market_location: Location, turn_held: psycopg.Connection[Any]
) -> None:
    """The batch is run again with each write in a savepoint, the joined ones included."""
    assert isinstance(market_location, str)
    store = Store(market_location)
    try:
        writes = Writes(store)
        writes.start(0)
        until(
            lambda: writer_turns(market_location, granted=False) == 1,
            "the wait for the turn",
            30,
            0.01,
        )
        failed: list[BaseException] = []

        def duplicate() -> None:
            try:
                store.write_sync(writes._op(0))
            except Exception as exc:
                failed.append(exc)

        clash = threading.Thread(target=duplicate, daemon=True)
        clash.start()
        until(lambda: store._queue.qsize() == 1, "the clashing write queued", 30, 0.01)
        writes.start(1)
        until(lambda: store._queue.qsize() == 2, "the later write queued", 30, 0.01)
        turn_held.execute("SELECT pg_advisory_unlock(%s)", (pgstore.WRITER_LOCK,))
        writes.join()
        clash.join(timeout=60)
        assert len(failed) == 1 and "duplicate key" in str(failed[0])
        assert writes.transactions[0] == writes.transactions[1]
        assert _committed(market_location) == {"w0", "w1"}
    finally:
        store.close()
