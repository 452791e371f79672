"""Exponential backoff with full jitter, so that many sellers do not return in lockstep."""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from random import Random


class _Urandom:
    """The jitter drawn from os.urandom: the random module, imported for this alone,
    would stay in the live system's memory (with bisect and _sha512, about 0.08 MiB)."""

    def uniform(self, low: float, high: float) -> float:
        return low + (high - low) * (int.from_bytes(os.urandom(7), "little") / (1 << 56))


class Backoff:
    """Delays whose bound doubles from `base` up to `cap`; each is drawn at random between
    a tenth of the bound and the bound (`rng`: a random.Random, for tests)."""

    def __init__(self, base: float = 1.0, cap: float = 60.0, rng: Random | None = None):
        self.base = base
        self.cap = cap
        self.failures = 0
        self._rng: Random | _Urandom = rng or _Urandom()

    def next_delay(self) -> float:
        """The delay before the next attempt after one more failure."""
        bound = min(self.cap, self.base * 2.0 ** min(self.failures, 32))
        self.failures += 1
        return self._rng.uniform(bound / 10, bound)

    def reset(self) -> None:
        """Back to short delays after a success."""
        self.failures = 0
