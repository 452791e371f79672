"""A seller's side of the setuid loader, run by the tests as an unprivileged user.

    setuid_caller.py run LOADER JOB INPUT CPU_SECONDS WALL_SECONDS [NICE [UID GID]]
    setuid_caller.py spin LOADER JOB
    setuid_caller.py selftest LOADER JOB

`run` prints the result as JSON (or the JailError as {"error": ...}); its environment may
set CPU_HARD (a lower RLIMIT_CPU hard limit first) and NICE_FIRST (the caller's own
niceness first); UID GID force the identity the control stream asks for. `spin` starts
JOB, prints the pid it spawned, kills it when its stdin closes and prints the outcome.
`selftest` prints the report's summary.
"""

from __future__ import annotations

import json
import os
import resource
import sys
from pathlib import Path

from cpushare.jail import JailError, Limits, runner, self_test, validate_program


def run(loader: Path, job: Path, args: list[str]) -> None:
    data, cpu, wall, *rest = args
    if "CPU_HARD" in os.environ:
        hard = int(os.environ["CPU_HARD"])
        resource.setrlimit(resource.RLIMIT_CPU, (hard, hard))
    if "NICE_FIRST" in os.environ:
        os.nice(int(os.environ["NICE_FIRST"]))
    nice = int(rest[0]) if rest else 19
    if len(rest) == 3:
        forced = (int(rest[1]), int(rest[2]))
        runner._identity = lambda loader: forced
    limits = Limits(cpu_seconds=int(cpu), wall_seconds=float(wall), nice=nice)
    try:
        result = runner.run_job(job.read_bytes(), data.encode(), limits, loader=loader)
    except JailError as exc:
        print(json.dumps({"error": str(exc)}))
        return
    print(
        json.dumps(
            {
                "outcome": str(result.outcome),
                "exit_status": result.exit_status,
                "output": result.output.decode(errors="replace"),
            }
        )
    )


def spin(loader: Path, job: Path) -> None:
    limits = Limits(cpu_seconds=60, wall_seconds=120.0)
    image = validate_program(job.read_bytes(), limits)
    with runner.input_file(b"") as stdin:
        started = runner.spawn(image, stdin, limits, loader=loader)
        print(started.pid, flush=True)
        sys.stdin.read()
        os.kill(started.pid, 9)
        print(runner.finish(started).outcome, flush=True)


def main() -> None:
    command, loader, job, *rest = sys.argv[1:]
    if command == "run":
        run(Path(loader), Path(job), rest)
    elif command == "spin":
        spin(Path(loader), Path(job))
    else:
        print(self_test(loader=Path(loader), job=Path(job)).summary())


if __name__ == "__main__":
    main()
