#!/usr/bin/env python3
"""`make bench`: runs every scripts/bench_*.py in turn, prints their figures as they come,
and at the end the lines that hold a goal's figure, script by script, with each script's
time: the closing note's figures from one run, in one place."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

# A line holding a goal's figure says so: `... (goal >= 0.8)`, `goal: ...`.
GOAL = "goal"


def run(script: Path) -> tuple[int, list[str]]:
    """Run one script, its output passed through line by line; its exit status and the
    lines of its output that hold a goal."""
    goals: list[str] = []
    with subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, text=True, bufsize=1
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            print(line, end="", flush=True)
            if GOAL in line:
                goals.append(line.rstrip())
    return process.returncode, goals


def main() -> int:
    failed = 0
    summary: list[str] = []
    for script in sorted(Path(__file__).parent.glob("bench_*.py")):
        print(f"== {script.name}", flush=True)
        start = time.monotonic()
        code, goals = run(script)
        took = f"{script.name}: {time.monotonic() - start:.1f} s" + (
            "" if code == 0 else f", exit status {code}"
        )
        print(f"== {took}", flush=True)
        summary += [f"== {took}", *goals]
        failed += code != 0
    print("\n== the goals' figures, script by script")
    print("\n".join(summary))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
