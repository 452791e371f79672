"""The seccomp check run at boot and by the seller: strict mode works, or exactly why not.

Three checks: strict mode is available to this process, a job that makes a forbidden
system call is killed for it, and a benign job runs and answers correctly.

Failing on purpose (for boot tests: does a failed check stop the sellers?) goes through
the real path: the forbidden-syscall check is fed the benign input, so the job survives
and the check reports it. `python3 -m cpushare.jail.selftest` is the command line.
"""

from __future__ import annotations

from pathlib import Path

from cpushare.jail.loader import find_loader, find_prebuilt
from cpushare.jail.model import JailError, Limits, Outcome
from cpushare.jail.runner import run_job
from cpushare.record import field, record

IMAGE_SELFTEST_JOB = Path("/usr/lib/cpushare/selftest.job")
SELFTEST_LIMITS = Limits(cpu_seconds=5, wall_seconds=30.0, memory_bytes=32 << 20, output_bytes=4096)
BENIGN_INPUT = b"behave"
FORBIDDEN_INPUT = b"forbidden"


@record(frozen=True)
class SelfTestReport:
    """Which checks passed and, for each that failed, what went wrong."""

    passed: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.passed) and not self.failures

    def summary(self) -> str:
        if self.ok:
            return "strict seccomp verified: " + ", ".join(self.passed)
        return "strict seccomp check failed: " + "; ".join(self.failures)


def find_selftest_job() -> Path:
    """$CPUSHARE_SELFTEST_JOB, else the installed self-test job (built by the builder with
    the job SDK from its `selftest.c`)."""
    return find_prebuilt("CPUSHARE_SELFTEST_JOB", IMAGE_SELFTEST_JOB, "self-test job")


def expected_output(data: bytes) -> bytes:
    """What the self-test job writes for the benign input `data` (FNV-1a of it)."""
    digest = 2166136261
    for byte in data:
        digest = ((digest ^ byte) * 16777619) & 0xFFFFFFFF
    return f"cpushare selftest ok fnv1a={digest:08x}\n".encode()


def strict_mode_problem(status_file: Path = Path("/proc/self/status")) -> str | None:
    """Why strict mode cannot be entered from this process, or None if it can."""
    try:
        status = status_file.read_text()
    except OSError as exc:
        return f"cannot read {status_file}: {exc.strerror}"
    for line in status.splitlines():
        if line.startswith("Seccomp:"):
            mode = line.split(":", 1)[1].strip()
            if mode == "0":
                return None
            return f"this process already runs under seccomp mode {mode}, strict is impossible"
    return "the kernel has no seccomp support (no Seccomp field in /proc/self/status)"


def self_test(
    *, loader: Path | None = None, job: Path | None = None, fail_on_purpose: bool = False
) -> SelfTestReport:
    """Run the three checks; `fail_on_purpose` feeds the forbidden check a benign input."""
    report = SelfTestReport()
    problem = strict_mode_problem()
    if problem:
        report.failures.append(problem)
    else:
        report.passed.append("strict mode available")
    try:
        loader = loader or find_loader()
        program = (job or find_selftest_job()).read_bytes()
    except (JailError, OSError) as exc:
        report.failures.append(f"no self-test job or loader: {exc}")
        return report
    try:
        forbidden = run_job(
            program,
            BENIGN_INPUT if fail_on_purpose else FORBIDDEN_INPUT,
            SELFTEST_LIMITS,
            loader=loader,
        )
        benign = run_job(program, BENIGN_INPUT, SELFTEST_LIMITS, loader=loader)
    except JailError as exc:
        report.failures.append(str(exc))
        return report
    if forbidden.outcome is Outcome.FORBIDDEN_SYSCALL:
        report.passed.append("forbidden syscall killed")
    else:
        report.failures.append(
            f"a forbidden system call was not stopped (job ended {forbidden.outcome}: "
            f"{forbidden.detail})"
        )
    if benign.outcome is Outcome.OK and benign.output == expected_output(BENIGN_INPUT):
        report.passed.append("benign job ok")
    else:
        report.failures.append(
            f"the benign job did not succeed (ended {benign.outcome}: {benign.detail}, "
            f"output {benign.output[:80]!r})"
        )
    return report
