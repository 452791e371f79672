"""What a job traded on the market may use: the limits, their bounds and their defaults.

One definition for every party: the buyer's CLI fills them in, the market refuses a job
outside them, the seller refuses a lease outside them, and the jail runs a job under them
(`cpushare.jail.Limits.for_job`). Standard library only: it ships in the guest.
"""

from __future__ import annotations

from cpushare.record import fields, record

# A program and an input travel whole in one request or one lease.
MAX_PROGRAM_BYTES = 16 << 20
MAX_INPUT_BYTES = 16 << 20


@record(frozen=True)
class Bound:
    """The closed range a limit must lie in."""

    low: int
    high: int


BOUNDS = {
    "cpu_seconds": Bound(1, 86400),
    "wall_seconds": Bound(1, 7 * 86400),
    "memory_bytes": Bound(1 << 20, 4 << 30),
    "output_bytes": Bound(0, 16 << 20),
}
DEFAULT_CPU_SECONDS = 60

# What a seller waits for at most on a market's word, whatever the market says: a lease
# is extended at least every MAX_EXTEND_INTERVAL seconds and an extension given at most
# MAX_EXTEND_SECONDS (no lease_seconds parks a seller), and no exchange with a market
# (request and whole reply: room for a 16 MiB program on a slow line) lasts longer than
# MAX_EXCHANGE_SECONDS (a reply dripped a byte at a time does not either); a market's
# Retry-After is honoured up to MAX_RETRY_AFTER seconds.
MAX_EXTEND_INTERVAL = 300.0
MAX_EXTEND_SECONDS = 30.0
MAX_EXCHANGE_SECONDS = 600.0
MAX_RETRY_AFTER = 300.0


def default_wall_seconds(cpu_seconds: int) -> float:
    """The wall-clock allowance when none is given: room for a loaded seller's CPU share,
    and never under five minutes."""
    return float(max(300, 5 * cpu_seconds))


@record(frozen=True)
class JobLimits:
    """What one job may use. Construct freely; `problems()` says what is out of bounds."""

    cpu_seconds: int = DEFAULT_CPU_SECONDS
    wall_seconds: float = default_wall_seconds(DEFAULT_CPU_SECONDS)
    memory_bytes: int = 256 << 20
    output_bytes: int = 1 << 20

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    def problems(self) -> list[str]:
        """One sentence per limit outside its bound; empty when all are fine."""
        return [
            f"limits.{name} is {value}: it must be between {bound.low} and {bound.high}"
            for name, bound in BOUNDS.items()
            if not bound.low <= (value := getattr(self, name)) <= bound.high
        ]

    def as_dict(self) -> dict[str, int | float]:
        return {name: getattr(self, name) for name in self.names()}
