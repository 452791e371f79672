"""The seccomp-strict jail: untrusted x86-64 jobs that can touch nothing but two pipes."""

from __future__ import annotations

from cpushare.jail.check import SelfTestReport, self_test
from cpushare.jail.elf import InvalidProgram, JobImage, MemoryLimitExceeded, validate_program
from cpushare.jail.loader import find_loader
from cpushare.jail.model import JailError, JobResult, Limits, Outcome
from cpushare.jail.runner import Jail, prepare, run_job, run_prepared

__all__ = [
    "InvalidProgram",
    "Jail",
    "JailError",
    "JobImage",
    "JobResult",
    "Limits",
    "MemoryLimitExceeded",
    "Outcome",
    "SelfTestReport",
    "find_loader",
    "prepare",
    "run_job",
    "run_prepared",
    "self_test",
    "validate_program",
]
