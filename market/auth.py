"""Who is asking: accounts by API key, orders (to enroll) and hosts by their secrets.

Checks are cached for at most CACHE_SECONDS, so a revocation (by the API here, or by the
operator's command in another process) takes effect within that time; the API's own
revocations also clear the cache at once. Caches and the enrollment limiter are bounded.

An entry asked for once it is REFRESH_AFTER old is read again by a thread of its own, on a
connection of its own (Refresher), while the cached answer is still given: a seller that
keeps asking never waits for the database, and the event loop, which every request
shares, does not either (each host read again every second, on the loop, held it 1.4 ms
each under load). The entry read again counts from when that read began.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

from market import hosts
from market.accounts import account_row
from market.api import Credentials
from market.dialect import Connection
from market.errors import Forbidden, TooManyRequests, Unauthorized

log = logging.getLogger("market")

CACHE_SECONDS = 1.0
# Age from which an entry asked for is read again in the background.
REFRESH_AFTER = CACHE_SECONDS / 2
CACHE_ENTRIES = 65536
# Enrollments per source network: a burst, then one every ENROLL_EVERY seconds.
ENROLL_BURST = 20
ENROLL_EVERY = 6.0

K = TypeVar("K")
V = TypeVar("V")


class Refresher:
    """Runs reads handed to it, one at a time, in a thread of its own (started with the
    first) on a connection of its own; a read that fails is dropped (its entry expires,
    and is then read by its caller)."""

    def __init__(self, connect: Callable[[], Connection]) -> None:
        self._connect = connect
        self._queue: queue.SimpleQueue[Callable[[Connection], None] | None]
        self._queue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def submit(self, read: Callable[[Connection], None]) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="market-auth", daemon=True)
            self._thread.start()
        self._queue.put(read)

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        conn: Connection | None = None
        try:
            while (read := self._queue.get()) is not None:
                try:
                    if conn is None:
                        conn = self._connect()
                    read(conn)
                except Exception as exc:  # the market's, or an engine's (sqlite3, psycopg)
                    log.warning("cannot read credentials again: %s", exc)
                    if conn is not None:
                        with contextlib.suppress(Exception):
                            conn.close()
                    conn = None
        finally:
            if conn is not None:
                conn.close()


class TimedCache(Generic[K, V]):
    """A bounded map whose entries live CACHE_SECONDS; with a Refresher, an entry asked
    for once REFRESH_AFTER old is read again by it meanwhile (`get`'s `read`)."""

    def __init__(self, refresher: Refresher | None = None) -> None:
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._refresher = refresher
        self._lock = threading.Lock()
        # Keys being read again, and clear()'s count: a read begun before a clear is dropped.
        self._refreshing: set[K] = set()
        self._cleared = 0

    def get(
        self, key: K, load: Callable[[], V], read: Callable[[Connection], V] | None = None
    ) -> V:
        now = time.monotonic()
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None and now - hit[0] < CACHE_SECONDS:
                if (
                    read is not None
                    and self._refresher is not None
                    and now - hit[0] >= REFRESH_AFTER
                    and key not in self._refreshing
                ):
                    self._refreshing.add(key)
                    self._refresher.submit(self._read_again(key, read, self._cleared))
                return hit[1]
        value = load()
        with self._lock:
            self._store(key, now, value)
        return value

    def _read_again(
        self, key: K, read: Callable[[Connection], V], cleared: int
    ) -> Callable[[Connection], None]:
        def run(conn: Connection) -> None:
            began = time.monotonic()
            try:
                value = read(conn)
            finally:
                with self._lock:
                    self._refreshing.discard(key)
            with self._lock:
                hit = self._entries.get(key)
                if cleared == self._cleared and (hit is None or hit[0] < began):
                    self._store(key, began, value)

        return run

    def _store(self, key: K, when: float, value: V) -> None:
        self._entries[key] = (when, value)
        self._entries.move_to_end(key)
        while len(self._entries) > CACHE_ENTRIES:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._cleared += 1


class EnrollLimiter:
    """A token bucket per source network, bounded in the networks it remembers."""

    def __init__(self) -> None:
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, network: str) -> None:
        now = time.monotonic()
        tokens, then = self._buckets.pop(network, (float(ENROLL_BURST), now))
        tokens = min(float(ENROLL_BURST), tokens + (now - then) / ENROLL_EVERY)
        if tokens < 1:
            self._buckets[network] = (tokens, now)
            raise TooManyRequests(
                f"too many enrollments from {network}: try again later", ENROLL_EVERY
            )
        self._buckets[network] = (tokens - 1, now)
        while len(self._buckets) > CACHE_ENTRIES:
            self._buckets.popitem(last=False)


class Authenticator:
    """Checks credentials against the database through short-lived caches."""

    def __init__(
        self, reader: Callable[[], Connection], connect: Callable[[], Connection] | None = None
    ) -> None:
        """`reader` is the event loop's connection; `connect` makes the Refresher's own."""
        self._reader = reader
        self._refresher = None if connect is None else Refresher(connect)
        self._accounts: TimedCache[str, int | None] = TimedCache(self._refresher)
        # A host, the reason it is refused (revoked), or None (unknown or wrong secret).
        self._hosts: TimedCache[tuple[str, str], hosts.Host | str | None]
        self._hosts = TimedCache(self._refresher)
        self.enrollments = EnrollLimiter()

    def clear(self) -> None:
        self._accounts.clear()
        self._hosts.clear()

    def close(self) -> None:
        """Stop the Refresher's thread (if it started)."""
        if self._refresher is not None:
            self._refresher.close()

    def account(self, creds: Credentials) -> int:
        if creds.api_key is None:
            raise Forbidden("this needs an account's API key (Authorization: Bearer KEY)")
        key = creds.api_key
        found = self._accounts.get(
            key, lambda: account_row(self._reader(), key), lambda conn: account_row(conn, key)
        )
        if found is None:
            raise Unauthorized("unknown API key")
        if found < 0:
            raise hosts.Revoked("this account is disabled")
        return found

    def order(self, creds: Credentials) -> str:
        """The order id of order credentials (enrollment checks them uncached: it is rare)."""
        if creds.order_id is None or creds.secret is None:
            raise Forbidden("enrolling needs a sell order's credentials (HTTP Basic ORDER:SECRET)")
        if not hosts.check_order(self._reader(), creds.order_id, creds.secret):
            raise Unauthorized("unknown order or wrong secret")
        return creds.order_id

    def host(self, creds: Credentials) -> hosts.Host:
        if creds.host_id is None or creds.secret is None:
            raise Forbidden(
                "this needs a host's credentials (HTTP Basic HOST_ID:HOST_SECRET): "
                "enroll first: POST /v1/hosts with the order's credentials"
            )
        key = (creds.host_id, creds.secret)
        found = self._hosts.get(
            key,
            lambda: _load_host(self._reader(), *key),
            lambda conn: _load_host(conn, *key),
        )
        if isinstance(found, str):
            raise hosts.Revoked(found)
        if found is None:
            raise Unauthorized("unknown host or wrong secret: enroll again")
        return found


def _load_host(conn: Connection, host_id: str, secret: str) -> hosts.Host | str | None:
    try:
        return hosts.authenticate(conn, host_id, secret)
    except hosts.Revoked as exc:
        return str(exc)
