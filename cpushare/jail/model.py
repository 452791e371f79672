"""The jail's vocabulary: limits a job runs under, how it ended, and what it produced."""

from __future__ import annotations

import enum
import math

from cpushare.limits import JobLimits
from cpushare.record import record

_JOB = JobLimits()
# The jail's own bounds: what it can enforce at all, wider than a market job's
# (cpushare.limits) so that local runs (`livecd job run`, benchmarks) may go further.
# A job's stack: 8 MiB, or a quarter of a smaller memory limit. It counts against the
# limit like everything else.
STACK_BYTES = 8 << 20
MAX_CPU_SECONDS = 1_000_000
MIN_MEMORY_BYTES = 1 << 20
# The arena must fit between its base and the stack (see cpushare.jail.elf).
MAX_MEMORY_BYTES = 4 << 40


class Outcome(enum.StrEnum):
    """How a job ended."""

    OK = "ok"
    EXIT = "exit"
    FORBIDDEN_SYSCALL = "forbidden-syscall"
    CPU_LIMIT = "cpu-limit"
    WALL_LIMIT = "wall-limit"
    OUTPUT_LIMIT = "output-limit"
    MEMORY_LIMIT = "memory-limit"
    CRASHED = "crashed"
    INVALID = "invalid"


@record(frozen=True)
class Limits:
    """What one job may use, and how nicely it runs. Impossible values raise ValueError
    saying which and why. A market job's defaults, except that a local run keeps more
    output (a market job's output is sent in one reply)."""

    cpu_seconds: int = _JOB.cpu_seconds
    wall_seconds: float = _JOB.wall_seconds
    memory_bytes: int = _JOB.memory_bytes
    output_bytes: int = 64 << 20
    nice: int = 19

    @classmethod
    def for_job(cls, job: JobLimits, nice: int = 19) -> Limits:
        """The jail's limits for a market job."""
        return cls(job.cpu_seconds, job.wall_seconds, job.memory_bytes, job.output_bytes, nice)

    def __post_init__(self) -> None:
        if not 1 <= self.cpu_seconds <= MAX_CPU_SECONDS:
            raise ValueError(
                f"the CPU limit must be between 1 and {MAX_CPU_SECONDS} seconds, "
                f"not {self.cpu_seconds}"
            )
        if not (0 < self.wall_seconds < math.inf):
            raise ValueError(
                f"the wall-clock limit must be a positive number of seconds, "
                f"not {self.wall_seconds}"
            )
        if not MIN_MEMORY_BYTES <= self.memory_bytes <= MAX_MEMORY_BYTES:
            raise ValueError(
                f"the memory limit must be between {MIN_MEMORY_BYTES >> 20} MiB and "
                f"{MAX_MEMORY_BYTES >> 40} TiB, not {self.memory_bytes} bytes"
            )
        if self.output_bytes < 0:
            raise ValueError(f"the output limit cannot be negative ({self.output_bytes})")
        if not 0 <= self.nice <= 19:
            raise ValueError(f"nice must be between 0 and 19, not {self.nice}")


@record(frozen=True)
class JobResult:
    """How a job ended, its output (cut at the output limit) and the resources it used."""

    outcome: Outcome
    exit_status: int | None
    output: bytes
    cpu_seconds: float
    wall_seconds: float
    detail: str


class JailError(RuntimeError):
    """The jail itself could not run a job (no loader, setup failed): not the job's fault."""
