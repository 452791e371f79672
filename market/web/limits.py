"""Login attempts, limited per account and per client address: a burst, then one every
few seconds, so guessing a password costs hours per thousand tries."""

from __future__ import annotations

import time
from collections import OrderedDict

from market.errors import TooManyRequests

BURST = 5
EVERY_SECONDS = 12.0
# Keys remembered at most (accounts and addresses); the oldest are forgotten first.
REMEMBERED = 65536


class LoginLimiter:
    """A token bucket per key ('account:NAME', 'address:IP')."""

    def __init__(self) -> None:
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, *keys: str) -> None:
        """Spend one attempt from each key's bucket, or refuse without spending any."""
        now = time.monotonic()
        levels = {key: self._level(key, now) for key in keys}
        if any(tokens < 1 for tokens in levels.values()):
            raise TooManyRequests(
                "too many sign-in attempts: wait a minute and try again", EVERY_SECONDS
            )
        for key, tokens in levels.items():
            self._buckets.pop(key, None)
            self._buckets[key] = (tokens - 1, now)
        while len(self._buckets) > REMEMBERED:
            self._buckets.popitem(last=False)

    def _level(self, key: str, now: float) -> float:
        tokens, then = self._buckets.get(key, (float(BURST), now))
        return min(float(BURST), tokens + (now - then) / EVERY_SECONDS)
