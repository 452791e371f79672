"""Exponential backoff with full jitter, so that many sellers do not return in lockstep."""

from __future__ import annotations

import random


class Backoff:
    """Delays whose bound doubles from `base` up to `cap`; each is drawn at random between
    a tenth of the bound and the bound."""

    def __init__(self, base: float = 1.0, cap: float = 60.0, rng: random.Random | None = None):
        self.base = base
        self.cap = cap
        self.failures = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        """The delay before the next attempt after one more failure."""
        bound = min(self.cap, self.base * 2.0 ** min(self.failures, 32))
        self.failures += 1
        return self._rng.uniform(bound / 10, bound)

    def reset(self) -> None:
        """Back to short delays after a success."""
        self.failures = 0
