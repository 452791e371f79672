"""Who is asking: accounts by API key, orders (to enroll) and hosts by their secrets.

Checks are cached for at most CACHE_SECONDS, so a revocation (by the API here, or by the
operator's command in another process) takes effect within that time; the API's own
revocations also clear the cache at once. Caches and the enrollment limiter are bounded.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

from market import hosts
from market.accounts import account_row
from market.api import Credentials
from market.dialect import Connection
from market.errors import Forbidden, TooManyRequests, Unauthorized

CACHE_SECONDS = 1.0
CACHE_ENTRIES = 65536
# Enrollments per source network: a burst, then one every ENROLL_EVERY seconds.
ENROLL_BURST = 20
ENROLL_EVERY = 6.0

K = TypeVar("K")
V = TypeVar("V")


class TimedCache(Generic[K, V]):
    """A bounded map whose entries live CACHE_SECONDS."""

    def __init__(self) -> None:
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K, load: Callable[[], V]) -> V:
        now = time.monotonic()
        hit = self._entries.get(key)
        if hit is not None and now - hit[0] < CACHE_SECONDS:
            return hit[1]
        value = load()
        self._entries[key] = (now, value)
        self._entries.move_to_end(key)
        while len(self._entries) > CACHE_ENTRIES:
            self._entries.popitem(last=False)
        return value

    def clear(self) -> None:
        self._entries.clear()


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

    def __init__(self, reader: Callable[[], Connection]) -> None:
        self._reader = reader
        self._accounts: TimedCache[str, int | None] = TimedCache()
        # A host, the reason it is refused (revoked), or None (unknown or wrong secret).
        self._hosts: TimedCache[tuple[str, str], hosts.Host | str | None] = TimedCache()
        self.enrollments = EnrollLimiter()

    def clear(self) -> None:
        self._accounts.clear()
        self._hosts.clear()

    def account(self, creds: Credentials) -> int:
        if creds.api_key is None:
            raise Forbidden("this needs an account's API key (Authorization: Bearer KEY)")
        key = creds.api_key
        found = self._accounts.get(key, lambda: account_row(self._reader(), key))
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
        found = self._hosts.get(key, lambda: self._load_host(*key))
        if isinstance(found, str):
            raise hosts.Revoked(found)
        if found is None:
            raise Unauthorized("unknown host or wrong secret: enroll again")
        return found

    def _load_host(self, host_id: str, secret: str) -> hosts.Host | str | None:
        try:
            return hosts.authenticate(self._reader(), host_id, secret)
        except hosts.Revoked as exc:
            return str(exc)
