"""The runner and the loader: what a running job is allowed, and how its end is named."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from cpushare.jail import (
    Jail,
    JailError,
    JobImage,
    JobResult,
    Limits,
    Outcome,
    prepare,
    run_job,
    run_prepared,
    validate_program,
)
from cpushare.jail.elf import ARENA_BASE, STACK_TOP, Segment
from cpushare.jail.model import STACK_BYTES
from cpushare.jail.runner import NOBODY, finish, spawn
from livecd.toolchain import LOADER_ADDRESS

LIMITS = Limits(cpu_seconds=3, wall_seconds=30.0, memory_bytes=64 << 20, output_bytes=32 << 20)


@contextmanager
def held_input() -> Iterator[tuple[int, int]]:
    """A pipe for the job's input that stays open until the test closes its write end."""
    read_end, write_end = os.pipe()
    try:
        yield read_end, write_end
    finally:
        os.close(read_end)
        with contextlib.suppress(OSError):
            os.close(write_end)


def proc_status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


def wait_until_locked(pid: int) -> dict[str, str]:
    """/proc/PID/status once the loader has switched strict seccomp on."""
    for _ in range(2000):
        status = proc_status(pid)
        if status.get("Seccomp") == "1":
            return status
        time.sleep(0.005)
    raise AssertionError(f"job {pid} never entered strict seccomp: {status}")


def test_a_running_job_is_locked_down(jobs: dict[str, bytes], loader: Path) -> None:
    image = validate_program(jobs["echo"], LIMITS)
    with held_input() as (stdin, writer):
        job = spawn(image, stdin, LIMITS, loader=loader)
        status = wait_until_locked(job.pid)
        fds = sorted(int(fd) for fd in os.listdir(f"/proc/{job.pid}/fd"))
        stat = Path(f"/proc/{job.pid}/stat").read_text().rsplit(")", 1)[1].split()
        limits = Path(f"/proc/{job.pid}/limits").read_text()
        maps = Path(f"/proc/{job.pid}/maps").read_text()
        oom_score_adj = Path(f"/proc/{job.pid}/oom_score_adj").read_text()
        os.write(writer, b"hello")
        os.close(writer)
        result = finish(job)
    assert status["NoNewPrivs"] == "1"
    if os.geteuid() == 0:
        assert status["Uid"].split() == [str(NOBODY)] * 4
        assert status["Gid"].split() == [str(NOBODY)] * 4
        assert status["Groups"].strip() == ""
    assert fds == [0, 1]
    assert int(stat[16]) == LIMITS.nice
    assert oom_score_adj.strip() == "1000"  # the OOM killer's first choice, not the seller
    limit_rows = {row[:26].strip(): row[26:].split()[:2] for row in limits.splitlines()[1:]}
    assert limit_rows["Max cpu time"] == [str(LIMITS.cpu_seconds), str(LIMITS.cpu_seconds + 1)]
    assert limit_rows["Max core file size"] == ["0", "0"]
    assert limit_rows["Max file size"] == ["0", "0"]
    assert limit_rows["Max stack size"] == ["0", "0"]
    assert f"{ARENA_BASE:x}-{ARENA_BASE + image.arena_size:x} rw-p" in maps
    assert f"{STACK_TOP - STACK_BYTES:x}-{STACK_TOP:x} rw-p" in maps
    assert "00400000-00401000 r-xp" in maps
    assert result.outcome is Outcome.OK
    assert result.output == b"hello"


@pytest.mark.parametrize(
    ("request_", "outcome", "status"),
    [
        (b"return 0", Outcome.OK, 0),
        (b"return 7", Outcome.EXIT, 7),
        (b"exit 9", Outcome.EXIT, 9),
        (b"exit 255", Outcome.EXIT, 255),
    ],
)
def test_exit_status_is_reported(
    jobs: dict[str, bytes], loader: Path, request_: bytes, outcome: Outcome, status: int
) -> None:
    result = run_job(jobs["exit_status"], request_, LIMITS, loader=loader)
    assert (result.outcome, result.exit_status) == (outcome, status)


def test_megabytes_in_and_out_unchanged(jobs: dict[str, bytes], loader: Path) -> None:
    data = random.Random(3).randbytes(5 << 20)
    result = run_job(jobs["echo"], data, LIMITS, loader=loader)
    assert result.outcome is Outcome.OK
    assert result.output == data


def test_a_small_output_is_read_without_a_large_buffer(
    jobs: dict[str, bytes], loader: Path
) -> None:
    """A read's buffer is allocated whole before the read: a few KB of output (and the
    end of the output) are read into buffers below malloc's 128 KiB mmap threshold, which
    the sellers fix (each larger block is mapped and unmapped afresh)."""
    jail = Jail.find(loader)
    prepared = prepare(jobs["echo"], LIMITS)
    data = random.Random(5).randbytes(4000)
    tracemalloc.start()
    try:
        result = run_prepared(prepared, data, LIMITS, jail)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (result.outcome, result.output) == (Outcome.OK, data)
    assert peak < 128 << 10


def test_a_prepared_program_runs_job_after_job_as_run_job_runs_it(
    jobs: dict[str, bytes], loader: Path
) -> None:
    jail = Jail.find(loader)
    who = (NOBODY, NOBODY) if os.geteuid() == 0 else (os.getuid(), os.getgid())
    assert (jail.loader, jail.uid, jail.gid) == (loader, *who)
    prepared = prepare(jobs["echo"], LIMITS)
    assert isinstance(prepared, JobImage)
    for data in (b"first", b"second", b""):
        result = run_prepared(prepared, data, LIMITS, jail)
        assert (result.outcome, result.output) == (Outcome.OK, data)
        assert result.output == run_job(jobs["echo"], data, LIMITS, loader=loader).output


def test_a_refused_program_is_not_started(tmp_path: Path) -> None:
    refused = prepare(b"#!/bin/sh\necho not an ELF\n", LIMITS)
    assert isinstance(refused, JobResult) and refused.outcome is Outcome.INVALID
    # No loader there: starting anything would be a JailError.
    jail = Jail(tmp_path / "no-loader", os.getuid(), os.getgid())
    assert run_prepared(refused, b"input", LIMITS, jail) is refused


def test_input_larger_than_the_arena_is_refused_by_the_job(
    jobs: dict[str, bytes], loader: Path
) -> None:
    small = Limits(memory_bytes=16 << 20)
    result = run_job(jobs["echo"], bytes(12 << 20), small, loader=loader)
    assert (result.outcome, result.exit_status) == (Outcome.EXIT, 2)


def test_sdk_functions_inside_the_jail(jobs: dict[str, bytes], loader: Path) -> None:
    result = run_job(jobs["sdk_functions"], b"", LIMITS, loader=loader)
    assert result.output == b"sdk ok\n"
    assert result.outcome is Outcome.OK


def test_wall_clock_stops_a_busy_job_before_its_cpu_limit(
    attacks: dict[str, bytes], loader: Path
) -> None:
    limits = Limits(cpu_seconds=30, wall_seconds=0.3)
    result = run_job(attacks["endless_loop"], b"", limits, loader=loader)
    assert result.outcome is Outcome.WALL_LIMIT
    assert result.cpu_seconds < limits.cpu_seconds


def test_the_job_dies_with_its_parent(attack_paths: dict[str, Path], loader: Path) -> None:
    # A parent starts a job that would spin for a minute, then is killed itself.
    script = f"""
import os, sys, time
from pathlib import Path
from cpushare.jail import Limits, validate_program
from cpushare.jail.runner import spawn
limits = Limits(cpu_seconds=60)
r, w = os.pipe()
job = spawn(validate_program(Path(sys.argv[1]).read_bytes(), limits), r, limits,
            loader=Path({str(loader)!r}))
print(job.pid, flush=True)
time.sleep(600)
"""
    parent = subprocess.Popen(
        [sys.executable, "-c", script, str(attack_paths["endless_loop"])],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    pid = int(parent.stdout.readline())
    wait_until_locked(pid)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    parent.stdout.close()
    for _ in range(2000):
        try:
            if proc_status(pid)["State"].startswith("Z"):
                break
        except FileNotFoundError:
            break
        time.sleep(0.005)
    else:
        raise AssertionError(f"job {pid} outlived its parent")


def test_a_loader_failure_is_a_jail_error_naming_the_step(loader: Path) -> None:
    # Bypass the validator: a segment on top of the loader's own code must not map.
    image = JobImage(
        segments=(Segment(LOADER_ADDRESS, 4096, LOADER_ADDRESS, b"\x90", 5),),
        entry=LOADER_ADDRESS,
        stack_base=STACK_TOP - STACK_BYTES,
        stack_size=STACK_BYTES,
        arena_base=ARENA_BASE,
        arena_size=1 << 20,
    )
    read_end, write_end = os.pipe()
    os.close(write_end)
    try:
        with pytest.raises(JailError, match="step map-segment: File exists"):
            finish(spawn(image, read_end, LIMITS, loader=loader))
    finally:
        os.close(read_end)


def test_a_missing_loader_is_a_jail_error(jobs: dict[str, bytes], tmp_path: Path) -> None:
    with pytest.raises(JailError, match="cannot start the jail loader"):
        run_job(jobs["echo"], b"", LIMITS, loader=tmp_path / "no-such-loader")


def test_memory_the_machine_refuses_is_a_memory_limit(
    job_paths: dict[str, Path], loader: Path
) -> None:
    # The loader inherits the caller's address-space limit: a 1 GiB job cannot map its arena.
    script = f"""
import resource
from pathlib import Path
from cpushare.jail import Limits, run_job
resource.setrlimit(resource.RLIMIT_AS, (768 << 20, 768 << 20))
result = run_job(Path({str(job_paths["echo"])!r}).read_bytes(), b"", Limits(memory_bytes=1 << 30),
                 loader=Path({str(loader)!r}))
print(result.outcome, result.detail)
"""
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert proc.stdout.startswith("memory-limit the machine could not provide the job's memory")
    assert "map-arena" in proc.stdout


def test_a_one_mebibyte_job_runs(jobs: dict[str, bytes], loader: Path) -> None:
    result = run_job(jobs["echo"], b"small", Limits(memory_bytes=1 << 20), loader=loader)
    assert (result.outcome, result.output) == (Outcome.OK, b"small")
