#!/usr/bin/env python3
"""The boot matrix's figures: guest uptime at the first accepted result for each machine
(NIC, vCPUs, RAM), and the memory the live system itself uses (RSS and PSS of every
process but the jobs) with 1 and 4 sellers. Prints, asserts nothing.

    scripts/bench_matrix.py [--iso ISO] [--quick]

Goal: at most 64 MB for the live system with 4 sellers. PSS counts a page shared by
several processes once, split between them: the sellers are forked from one warm
interpreter and share most of it, which RSS counts again for each of them.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from livecd.build import given_or_built
from livecd.qemu.guest import Guest
from livecd.qemu.machine import GuestConfig
from livecd.qemu.matrix import MATRIX, MemoryUse, live_memory
from livecd.qemu.sale import run_sale

MEMORY_GOAL_MB = 64


def first_results(iso: Path, work: Path, quick: bool) -> None:
    print(f"{'machine':<28} {'first result':>13}  problems")
    for entry in MATRIX:
        if quick and not entry.representative:
            continue
        cfg = GuestConfig(iso=iso, nic=entry.nic, cpus=entry.cpus, memory_mb=entry.memory_mb)
        run = work / entry.id
        run.mkdir()
        result = run_sale(cfg, run / "serial.log", run, jobs=2, timeout=300)
        first = result.sale.first_result_uptime if result.sale else None
        shown = f"{first:11.2f} s" if first is not None else f"{'-':>13}"
        print(f"{entry.id:<28} {shown}  {'; '.join(result.problems[:2]) or '-'}", flush=True)


def memory_with(iso: Path, work: Path, cpus: int) -> MemoryUse | None:
    """The live system's memory with one seller per vCPU, measured once the first
    results are in (every seller has leased, run and posted at least once)."""
    found: list[MemoryUse] = []

    def measure(guest: Guest) -> list[str]:
        found.append(live_memory(guest))
        return []

    run = work / f"memory-{cpus}"
    run.mkdir()
    cfg = GuestConfig(iso=iso, cpus=cpus, shell=True)
    result = run_sale(cfg, run / "serial.log", run, jobs=2 * cpus, timeout=300, while_up=measure)
    for problem in result.problems:
        print(f"bench_matrix: problem: {problem}")
    return found[0] if found else None


def report_memory(cpus: int, use: MemoryUse | None) -> None:
    if use is None:
        print(f"{cpus} seller(s): not measured")
        return
    goal = f" (goal <= {MEMORY_GOAL_MB} MB)" if cpus == 4 else ""
    print(
        f"{cpus} seller(s): {use.pss_kib / 1024:6.1f} MB PSS{goal}, "
        f"{use.rss_kib / 1024:6.1f} MB RSS, {use.processes} processes"
    )
    for name, pss in sorted(use.by_name.items(), key=lambda item: -item[1]):
        print(f"    {name:<20} {pss / 1024:6.1f} MB PSS")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iso", type=Path, help="ISO to boot [default: build the default one]")
    parser.add_argument("--quick", action="store_true", help="representative machines only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-matrix-") as tmp:
        work = Path(tmp)
        iso = given_or_built(args.iso, work)
        first_results(iso, work, args.quick)
        for cpus in (1, 4):
            report_memory(cpus, memory_with(iso, work, cpus))
    return 0


if __name__ == "__main__":
    sys.exit(main())
