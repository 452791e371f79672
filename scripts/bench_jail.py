#!/usr/bin/env python3
"""Jail figures: Floyd-Steinberg throughput in the jail against the same C built as an
ordinary program, and jail start-up from spawn to the job's first instruction."""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from cpushare.jail import Limits, Outcome, run_job, validate_program
from cpushare.jail.runner import finish, input_file, spawn
from livecd.sdk.dither import sample_image
from livecd.toolchain import FSDITHER_SOURCE, build_hosted, build_job, build_loader

THROUGHPUT_GOAL = 0.98
STARTUP_GOAL_MS = 2.0
# Both sides at the same priority, so the figure is the jail's cost and not nice's.
LIMITS = Limits(cpu_seconds=600, wall_seconds=600.0, memory_bytes=1 << 30, nice=0)
FIRST_BYTE_JOB = '#include "cpushare.h"\nint main(void) { write(1, "!", 1); return 0; }\n'


def tiled_picture(width: int, height: int) -> bytes:
    """A large PGM made of copies of a small sample (generating every pixel is slow)."""
    tile_w, tile_h = 500, 375
    tile = sample_image(tile_w, tile_h, seed=1)
    pixels = tile[len(tile) - tile_w * tile_h :]
    rows = [pixels[y * tile_w : (y + 1) * tile_w] for y in range(tile_h)]
    across = -(-width // tile_w)
    raster = b"".join((rows[y % tile_h] * across)[:width] for y in range(height))
    return f"P5\n{width} {height}\n255\n".encode() + raster


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_native(program: Path, picture: bytes) -> tuple[float, float, bytes]:
    """Wall seconds, CPU seconds and output of one native run."""
    cpu, start = children_cpu(), time.perf_counter()
    proc = subprocess.run([program], input=picture, capture_output=True, check=True)
    return time.perf_counter() - start, children_cpu() - cpu, proc.stdout


def time_jail(job: bytes, picture: bytes, loader: Path) -> tuple[float, float, bytes]:
    """Wall seconds, CPU seconds and output of one run in the jail."""
    start = time.perf_counter()
    result = run_job(job, picture, LIMITS, loader=loader)
    elapsed = time.perf_counter() - start
    if result.outcome is not Outcome.OK:
        raise SystemExit(f"bench_jail: fsdither failed in the jail: {result.detail}")
    return elapsed, result.cpu_seconds, result.output


def throughput(work: Path, loader: Path, rounds: int, width: int, height: int) -> float:
    job = build_job([FSDITHER_SOURCE], work / "fsdither.job").read_bytes()
    native = build_hosted([FSDITHER_SOURCE], work / "fsdither-native")
    picture = tiled_picture(width, height)
    megapixels = width * height / 1e6
    native_runs: list[tuple[float, float, bytes]] = []
    jail_runs: list[tuple[float, float, bytes]] = []
    for i in range(rounds):
        # Alternate the order so neither side always runs on a warmer machine.
        if i % 2:
            jail_runs.append(time_jail(job, picture, loader))
            native_runs.append(time_native(native, picture))
        else:
            native_runs.append(time_native(native, picture))
            jail_runs.append(time_jail(job, picture, loader))
        if native_runs[-1][2] != jail_runs[-1][2]:
            raise SystemExit("bench_jail: the jail and native outputs differ")
    native_s = statistics.median(wall for wall, _, _ in native_runs)
    native_cpu = statistics.median(cpu for _, cpu, _ in native_runs)
    jail_s = statistics.median(wall for wall, _, _ in jail_runs)
    jail_cpu = statistics.median(cpu for _, cpu, _ in jail_runs)
    ratio = native_s / jail_s
    print(f"fsdither {width}x{height} ({megapixels:.1f} MP), median of {rounds} runs each:")
    for name, wall, cpu in (
        ("native program", native_s, native_cpu),
        ("in the jail", jail_s, jail_cpu),
    ):
        print(
            f"  {name:15} {wall * 1000:8.1f} ms wall {cpu * 1000:8.1f} ms cpu "
            f"{megapixels / wall:7.1f} MP/s"
        )
    verdict = "met" if ratio >= THROUGHPUT_GOAL else "MISSED"
    print(f"  jail/native throughput {ratio:.3f} (goal >= {THROUGHPUT_GOAL}: {verdict})")
    return ratio


def startup(work: Path, loader: Path, starts: int) -> float:
    source = work / "first_byte.c"
    source.write_text(FIRST_BYTE_JOB)
    image = validate_program(build_job([source], work / "first_byte.job").read_bytes(), LIMITS)
    delays = []
    with input_file(b"") as stdin:
        for _ in range(starts):
            start = time.perf_counter()
            job = spawn(image, stdin, LIMITS, loader=loader)
            first = os.read(job.output_fd, 1)
            delays.append(time.perf_counter() - start)
            if first != b"!" or finish(job).outcome is not Outcome.OK:
                raise SystemExit("bench_jail: the start-up job failed")
    median_ms = statistics.median(delays) * 1000
    p90_ms = statistics.quantiles(delays, n=10)[-1] * 1000
    verdict = "met" if median_ms <= STARTUP_GOAL_MS else "MISSED"
    print(f"jail start-up, spawn to the job's first write, {starts} starts:")
    print(f"  median {median_ms:.3f} ms, p90 {p90_ms:.3f} ms")
    print(f"  (goal <= {STARTUP_GOAL_MS} ms: {verdict})")
    return median_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7, help="fsdither runs on each side")
    parser.add_argument("--width", type=int, default=4000)
    parser.add_argument("--height", type=int, default=3000)
    parser.add_argument("--starts", type=int, default=300, help="jail start-ups to time")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-jail-") as tmp:
        work = Path(tmp)
        loader = build_loader(work / "jail-loader")
        throughput(work, loader, args.rounds, args.width, args.height)
        startup(work, loader, args.starts)


if __name__ == "__main__":
    main()
