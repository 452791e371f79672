"""Credentials read again ahead of their expiry, off the event loop (market.auth): the
cached answer is given meanwhile, the new one counts from when its read began, and a
clear() (a revocation through the API) is never undone by a read begun before it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from market import auth
from market.dialect import Connection
from market.store import open_database


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(auth.time, "monotonic", fake)
    return fake


@pytest.fixture
def refresher(tmp_path: Path) -> Iterator[auth.Refresher]:
    made = auth.Refresher(lambda: open_database(tmp_path / "m.db"))
    yield made
    made.close()


def _not_on_the_loop() -> str:
    raise AssertionError("the caller waited for the database")


def _read(answer: str) -> Callable[[Connection], str]:
    def read(conn: Connection) -> str:
        assert conn.execute("SELECT 1").fetchone()[0] == 1  # on the refresher's connection
        return answer

    return read


def test_an_entry_is_read_again_off_the_loop_and_counts_from_that_read(
    clock: Clock, refresher: auth.Refresher
) -> None:
    cache: auth.TimedCache[str, str] = auth.TimedCache(refresher)
    assert cache.get("host", lambda: "first", _read("unused")) == "first"
    clock.now += auth.REFRESH_AFTER / 2
    # Young: nothing read again.
    assert cache.get("host", _not_on_the_loop, _read("unused")) == "first"
    refresher.close()
    assert cache.get("host", _not_on_the_loop) == "first"
    clock.now += auth.REFRESH_AFTER / 2
    # Old enough: the cached answer now, the new one read meanwhile.
    assert cache.get("host", _not_on_the_loop, _read("second")) == "first"
    refresher.close()  # waits for the read handed to it
    began = clock.now
    assert cache.get("host", _not_on_the_loop) == "second"
    clock.now = began + auth.CACHE_SECONDS
    # Nobody asked while it aged: read by its caller, as without a refresher.
    assert cache.get("host", lambda: "third") == "third"


def test_a_read_begun_before_a_clear_is_dropped(clock: Clock, refresher: auth.Refresher) -> None:
    cache: auth.TimedCache[str, str] = auth.TimedCache(refresher)
    cache.get("host", lambda: "trusted")
    clock.now += auth.REFRESH_AFTER
    reading, cleared = threading.Event(), threading.Event()

    def slow(conn: Connection) -> str:
        reading.set()
        assert cleared.wait(10)
        return "trusted still"

    assert cache.get("host", _not_on_the_loop, slow) == "trusted"
    assert reading.wait(10)
    cache.clear()  # the API revoked something meanwhile
    cleared.set()
    refresher.close()
    assert cache.get("host", lambda: "revoked") == "revoked"


def test_a_failed_read_leaves_the_entry_to_expire(clock: Clock, refresher: auth.Refresher) -> None:
    cache: auth.TimedCache[str, str] = auth.TimedCache(refresher)
    cache.get("host", lambda: "first")
    clock.now += auth.REFRESH_AFTER

    def failing(conn: Connection) -> str:
        raise RuntimeError("the database is away")

    assert cache.get("host", _not_on_the_loop, failing) == "first"
    refresher.close()
    # Read again by the next caller that asks once it is old enough.
    assert cache.get("host", _not_on_the_loop, _read("second")) == "first"
    refresher.close()
    assert cache.get("host", _not_on_the_loop) == "second"
    clock.now += auth.CACHE_SECONDS
    assert cache.get("host", lambda: "loaded") == "loaded"
