"""The store on both engines: migrations, group commit, isolation of failing writes; and
on SQLite a full disk."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from market.dialect import INTEGRITY_ERRORS, Connection, Location
from market.schema import SCHEMA_VERSION, SchemaTooNew, migrate, migrate_postgres
from market.store import CACHE_KIB, Store, StoreFull, connect, open_database


def test_new_database_is_migrated_to_the_current_version(tmp_path: Path) -> None:
    conn = open_database(tmp_path / "m.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert migrate(conn) == SCHEMA_VERSION


def test_every_sqlite_connection_keeps_a_page_cache_larger_than_the_default(
    tmp_path: Path,
) -> None:
    """The writer, the reader and the tools alike: SQLite's default 2 MB is outgrown past
    some 10,000 queued jobs, and leasing then cost the writer three times the CPU."""
    open_database(tmp_path / "m.db").close()
    for conn in (connect(tmp_path / "m.db"), connect(tmp_path / "m.db", writer=True)):
        assert conn.execute("PRAGMA cache_size").fetchone()[0] == -CACHE_KIB
        assert CACHE_KIB * 1024 >= 16 * 2_048_000
        conn.close()


def test_a_newer_database_is_refused(tmp_path: Path) -> None:
    conn = open_database(tmp_path / "m.db")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(SchemaTooNew, match="run a newer market"):
        migrate(conn)


@pytest.mark.parametrize("market_backend", ["postgres"])
def test_a_new_postgres_database_is_migrated_and_a_newer_one_refused(
    market_location: Location,
) -> None:
    conn = open_database(market_location)
    assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    assert migrate_postgres(conn) == SCHEMA_VERSION
    conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    with pytest.raises(SchemaTooNew, match="run a newer market"):
        migrate_postgres(conn)
    conn.close()


def _insert(value: str) -> Callable[[Connection], str]:
    def op(conn: Connection) -> str:
        row = conn.execute(
            "INSERT INTO settings (key, value) VALUES (?, ?) RETURNING key", (value, value)
        ).fetchone()
        return str(row[0])

    return op


def test_concurrent_writes_are_all_committed(market_location: Location) -> None:
    store = Store(market_location)
    keys = [f"k{i}" for i in range(400)]
    threads = [threading.Thread(target=lambda k=k: store.write_sync(_insert(k))) for k in keys]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.close()
    conn = connect(market_location)
    assert conn.execute("SELECT count(*) FROM settings").fetchone()[0] == len(keys)
    conn.close()


def test_a_write_cancelled_while_queued_is_dropped_and_the_writer_goes_on(
    market_location: Location, run_coroutine: Callable[[Any], Any]
) -> None:
    # (A cancelled write once made the writer thread die on its result: no write after it
    # was ever committed.)
    store = Store(market_location)
    busy, release = threading.Event(), threading.Event()

    def hold(conn: Connection) -> None:
        busy.set()
        release.wait(10)

    async def scenario() -> str:
        holding = asyncio.create_task(store.write(hold))
        await asyncio.to_thread(busy.wait, 10)
        queued = asyncio.create_task(store.write(_insert("cancelled")))
        await asyncio.sleep(0.05)  # in the writer's queue, behind `hold`
        queued.cancel()
        await asyncio.sleep(0.05)  # the cancel reaches the writer's future on the loop's next turn
        release.set()
        await holding
        return await store.write(_insert("after"))

    assert run_coroutine(scenario()) == "after"
    keys = [row[0] for row in store.reader.execute("SELECT key FROM settings").fetchall()]
    assert "after" in keys and "cancelled" not in keys
    store.close()


def test_a_failing_write_does_not_undo_its_batch_neighbours(market_location: Location) -> None:
    store = Store(market_location)
    store.write_sync(_insert("dup"))
    results: dict[str, object] = {}

    def attempt(key: str) -> None:
        try:
            results[key] = store.write_sync(_insert(key))
        except INTEGRITY_ERRORS as exc:
            results[key] = exc

    threads = [threading.Thread(target=attempt, args=(k,)) for k in ("a", "dup", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.close()
    assert isinstance(results["dup"], INTEGRITY_ERRORS)
    assert results["a"] == "a" and results["b"] == "b"
    conn = connect(market_location)
    rows = conn.execute("SELECT key FROM settings ORDER BY key").fetchall()
    conn.close()
    assert rows == [("a",), ("b",), ("dup",)]


def test_a_full_disk_is_reported_and_loses_nothing_committed(tmp_path: Path) -> None:
    store = Store(tmp_path / "m.db")
    store.write_sync(_insert("kept"))
    page_count = connect(tmp_path / "m.db").execute("PRAGMA page_count").fetchone()[0]

    def fill(conn: Connection) -> None:
        # The database may not grow past its current size: the same error as a full disk.
        conn.execute(f"PRAGMA max_page_count = {page_count}")
        conn.execute("INSERT INTO settings (key, value) VALUES ('big', ?)", ("x" * 10**6,))

    with pytest.raises(StoreFull, match="disk is full"):
        store.write_sync(fill)
    store.close()
    rows = connect(tmp_path / "m.db").execute("SELECT key FROM settings").fetchall()
    assert rows == [("kept",)]


def test_coins_credited_before_the_ledger_become_grants_that_add_up(tmp_path: Path) -> None:
    from market import ledger
    from market.schema import MIGRATIONS

    conn = connect(tmp_path / "m.db")
    for script in MIGRATIONS[:2]:
        conn.executescript(script)
    conn.execute("PRAGMA user_version = 2")
    conn.executescript(
        """
        INSERT INTO accounts VALUES (1, 'lab', 'k', 0);
        INSERT INTO orders VALUES ('o-1', 1, 's', 0);
        INSERT INTO programs VALUES ('p', 1, x'00', 1, 0);
        INSERT INTO jobs (id, account_id, program, input, cpu_seconds, wall_seconds,
            memory_bytes, output_bytes, replicas, max_results, slots, created, state)
            VALUES (1, 1, 'p', x'', 60, 300, 1, 1, 1, 3, 0, 0, 'done');
        INSERT INTO leases (id, job_id, order_id, seller, state, created, deadline)
            VALUES (1, 1, 'o-1', 's', 'done', 0, 1);
        INSERT INTO results (id, lease_id, job_id, order_id, outcome, output, output_sha256,
            cpu_seconds, wall_seconds, detail, verdict, created)
            VALUES (1, 1, 1, 'o-1', 'ok', x'', 'h', 2.5, 2.5, '', 'accepted', 0);
        INSERT INTO ledger VALUES (1, 1, 1, 'o-1', 2500, 0);
        """
    )
    assert migrate(conn) == 2
    assert ledger.balance(conn, 1) == 2500
    assert ledger.check(conn) == []


def test_two_stores_on_one_database_take_turns_without_losing_a_write(
    market_location: Location,
) -> None:
    """Two market instances granting coins to one account at once: every grant counts
    once (on PostgreSQL, conflicting transactions are run again)."""
    from market import accounts, ledger

    stores = [Store(market_location), Store(market_location)]
    owner = stores[0].write_sync(lambda c: accounts.create_account(c, "lab")).id
    grants = 60

    def grant(store: Store) -> None:
        store.write_sync(lambda c: ledger.grant(c, owner, 1000, 0.0))

    threads = [threading.Thread(target=grant, args=(stores[i % 2],)) for i in range(grants)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert stores[1].write_sync(lambda c: ledger.balance(c, owner)) == grants * 1000
    assert stores[0].write_sync(ledger.check) == []
    for store in stores:
        store.close()


def test_large_values_and_late_errors_go_through_one_batch(market_location: Location) -> None:
    """Writes nobody reads are sent without waiting on PostgreSQL: a value of megabytes is
    still sent whole, and an error reported only by a later read still fails its own write."""
    store = Store(market_location)
    store.write_sync(_insert("dup"))
    large = "x" * (8 << 20)

    def write_large(conn: Connection) -> int:
        conn.execute("INSERT INTO settings (key, value) VALUES ('large', ?)", (large,))
        conn.execute("INSERT INTO settings (key, value) VALUES ('dup', 'again')")
        return int(conn.execute("SELECT count(*) FROM settings").fetchone()[0])

    done: list[object] = []

    def attempt() -> None:
        try:
            done.append(store.write_sync(write_large))
        except INTEGRITY_ERRORS as exc:
            done.append(exc)

    writer = threading.Thread(target=attempt, daemon=True)
    writer.start()
    writer.join(timeout=60)
    assert done and isinstance(done[0], INTEGRITY_ERRORS), "the write hung or was kept"
    assert store.write_sync(lambda c: len(c.execute("SELECT value FROM settings").fetchall())) == 1
    store.write_sync(lambda c: c.execute("INSERT INTO settings VALUES ('large', ?)", (large,)))
    length = store.write_sync(
        lambda c: c.execute("SELECT length(value) FROM settings WHERE key = 'large'").fetchone()[0]
    )
    assert length == len(large)
    store.close()
