#!/usr/bin/env python3
"""Start-up figures: the median wall time of `python3 -c pass`, `livecd --help` and
`livecd job run` of a job that does nothing, each run N times in a fresh process, and the
median CPU time they took (steadier than wall time on a busy machine)."""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from livecd.toolchain import build_job

GOAL_MS = 150.0
TRIVIAL_JOB = '#include "cpushare.h"\nint main(void) { return 0; }\n'
# The console script's own body, so the figure does not depend on where it is installed.
LIVECD = [sys.executable, "-c", "import sys; from livecd.cli import main; sys.exit(main())"]


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def median_ms(argv: list[str], runs: int) -> tuple[float, float]:
    """(wall, CPU) milliseconds of one run of argv, medians of `runs`."""
    wall, cpu = [], []
    for _ in range(runs):
        cpu_before, start = children_cpu(), time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall.append((time.perf_counter() - start) * 1000)
        cpu.append((children_cpu() - cpu_before) * 1000)
    return statistics.median(wall), statistics.median(cpu)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", "--runs", type=int, default=15, help="runs of each command")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        source = Path(tmp) / "nothing.c"
        source.write_text(TRIVIAL_JOB)
        job = Path(tmp) / "nothing.job"
        build_job([source], job)
        cases = {
            "python3 -c pass": [sys.executable, "-c", "pass"],
            "livecd --help": [*LIVECD, "--help"],
            "livecd job run": [*LIVECD, "job", "run", str(job)],
        }
        figures = {name: median_ms(argv, args.runs) for name, argv in cases.items()}
    slow = False
    for name, (wall, cpu) in figures.items():
        over = name.startswith("livecd") and wall > GOAL_MS
        slow |= over
        print(
            f"{name:<18} {wall:7.1f} ms wall, {cpu:7.1f} ms CPU (medians of {args.runs})"
            + ("  SLOW" if over else "")
        )
    print(f"goal: every livecd command above starts and ends in at most {GOAL_MS:.0f} ms")
    return 1 if slow else 0


if __name__ == "__main__":
    sys.exit(main())
