#!/usr/bin/env python3
"""End-to-end figures: guest uptime at the first accepted result (BIOS, 1 vCPU, TCG), and
Floyd-Steinberg jobs per minute in the guest against the same jobs in the jail on the
host, in one run. Prints, asserts nothing.

    scripts/bench_e2e.py [--iso ISO] [--jobs N]

Goal: the first result accepted at most 8 s of guest uptime after power-on. The guest's
jobs per minute count from its first lease to its last accepted result, network round
trips included; the host runs the jobs one after another in the jail, nothing else.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from cpushare.jail import Limits, Outcome, run_job
from livecd.build import given_or_built
from livecd.qemu.machine import GuestConfig
from livecd.qemu.report import format_report
from livecd.qemu.sale import run_sale
from livecd.qemu.sale_market import JOB_LIMITS, build_fsdither, job_inputs
from livecd.toolchain import jail_environment

FIRST_RESULT_GOAL = 8.0


def host_jobs_per_minute(program: bytes, inputs: list[bytes]) -> float:
    """The same jobs, one at a time, in the jail on this machine."""
    os.environ.update(jail_environment())  # the jail's loader, built for this host
    limits = Limits.for_job(JOB_LIMITS)
    start = time.perf_counter()
    for data in inputs:
        result = run_job(program, data, limits)
        if result.outcome != Outcome.OK:
            raise SystemExit(f"bench_e2e: the job failed on the host: {result.detail}")
    return 60 * len(inputs) / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iso", type=Path, help="ISO to boot [default: build the default one]")
    parser.add_argument("--jobs", type=int, default=12, help="jobs in the batch [12]")
    parser.add_argument(
        "--nic", default="virtio-net-pci", help="emulated NIC [virtio-net-pci; QEMU's own: e1000]"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp:
        work = Path(tmp)
        iso = given_or_built(args.iso, work)
        result = run_sale(
            GuestConfig(iso=iso, cpus=1, nic=args.nic),
            work / "serial.log",
            work,
            jobs=args.jobs,
            timeout=600,
        )
        format_report(result, print)
        for problem in result.problems:
            print(f"bench_e2e: problem: {problem}")
        host = host_jobs_per_minute(build_fsdither(work), job_inputs(args.jobs))
    sale = result.sale
    assert sale is not None  # run_sale always reports its figures
    first = sale.first_result_uptime
    print(
        "first accepted result at uptime  "
        + (f"{first:7.2f} s (goal <= {FIRST_RESULT_GOAL:.0f} s)" if first else "      - s")
    )
    guest = sale.jobs_per_minute
    print(f"jobs per minute, guest (TCG)       {guest or 0:9.1f}")
    print(f"jobs per minute, host jail         {host:9.1f}")
    print(f"guest / host                       {(guest or 0) / host:9.4f}")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
