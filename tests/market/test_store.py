"""The SQLite store: migrations, group commit, isolation of failing writes, a full disk."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from market.schema import SCHEMA_VERSION, SchemaTooNew, migrate
from market.store import Store, StoreFull, connect, open_database


def test_new_database_is_migrated_to_the_current_version(tmp_path: Path) -> None:
    conn = open_database(tmp_path / "m.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert migrate(conn) == SCHEMA_VERSION


def test_a_newer_database_is_refused(tmp_path: Path) -> None:
    conn = open_database(tmp_path / "m.db")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(SchemaTooNew, match="run a newer market"):
        migrate(conn)


def _insert(value: str) -> Callable[[sqlite3.Connection], int]:
    def op(conn: sqlite3.Connection) -> int:
        cursor = conn.execute("INSERT INTO settings (key, value) VALUES (?, ?)", (value, value))
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    return op


def test_concurrent_writes_are_all_committed(tmp_path: Path) -> None:
    store = Store(tmp_path / "m.db")
    keys = [f"k{i}" for i in range(400)]
    threads = [threading.Thread(target=lambda k=k: store.write_sync(_insert(k))) for k in keys]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.close()
    conn = connect(tmp_path / "m.db")
    assert conn.execute("SELECT count(*) FROM settings").fetchone()[0] == len(keys)


def test_a_failing_write_does_not_undo_its_batch_neighbours(tmp_path: Path) -> None:
    store = Store(tmp_path / "m.db")
    store.write_sync(_insert("dup"))
    results: dict[str, object] = {}

    def attempt(key: str) -> None:
        try:
            results[key] = store.write_sync(_insert(key))
        except sqlite3.IntegrityError as exc:
            results[key] = exc

    threads = [threading.Thread(target=attempt, args=(k,)) for k in ("a", "dup", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.close()
    assert isinstance(results["dup"], sqlite3.IntegrityError)
    rows = connect(tmp_path / "m.db").execute("SELECT key FROM settings ORDER BY key").fetchall()
    assert rows == [("a",), ("b",), ("dup",)]


def test_a_full_disk_is_reported_and_loses_nothing_committed(tmp_path: Path) -> None:
    store = Store(tmp_path / "m.db")
    store.write_sync(_insert("kept"))
    page_count = connect(tmp_path / "m.db").execute("PRAGMA page_count").fetchone()[0]

    def fill(conn: sqlite3.Connection) -> None:
        # The database may not grow past its current size: the same error as a full disk.
        conn.execute(f"PRAGMA max_page_count = {page_count}")
        conn.execute("INSERT INTO settings (key, value) VALUES ('big', ?)", ("x" * 10**6,))

    with pytest.raises(StoreFull, match="disk is full"):
        store.write_sync(fill)
    store.close()
    rows = connect(tmp_path / "m.db").execute("SELECT key FROM settings").fetchall()
    assert rows == [("kept",)]
