#!/usr/bin/env python3
"""What one seller really takes in the guest, at rest and while it runs the model job:
the figures the memory plan's seller reserve is set by (cpushare/seller/plan.py).
Prints, asserts nothing.

    scripts/bench_seller_memory.py [--iso ISO] [--memory MIB] [--jobs N] [--job-memory MIB]

First, on the host's jail: the least memory limit (`memory_bytes`, in 64 KiB steps from
the jail's least, 1 MiB) the Floyd-Steinberg job runs at, with the reference's output, on
a 64x48 and on a 640x480 picture. Then one boot (BIOS, 1 vCPU, QEMU's own NIC, QEMU's
default 128 MiB unless --memory) with a market on loopback that trusts the guest alone.
Once the machine is enrolled and its seller idle: MemAvailable and the fleet's and the
seller's memory (RSS, PSS, private). Then N Floyd-Steinberg jobs on 64x48 pictures, then
N on 640x480 ones, each asking --job-memory (default the jail's least, 1 MiB): after each
batch the seller's peak RSS since the batch began (its VmHWM, reset before), its private
memory, and the lowest MemAvailable the guest saw while the batch ran (sampled every
0.1 s).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

from cpushare.jail import InvalidProgram, JailError, Limits, run_job
from cpushare.record import replace
from cpushare.seller.plan import MIB
from livecd.build import given_or_built
from livecd.qemu.events import ConsoleEvents
from livecd.qemu.guest import Guest
from livecd.qemu.machine import GuestConfig
from livecd.qemu.medium import make_medium
from livecd.qemu.report import Report, power_off
from livecd.qemu.sale_checks import result_problems
from livecd.qemu.sale_market import JOB_LIMITS, VOLUNTEER, SaleMarket, build_fsdither, guest_market
from livecd.sdk.dither import dither, sample_image
from livecd.toolchain import jail_environment

RUN = "/run/cpushare"
# Per process (fleet, then each seller): name, then kB of Rss, Pss, private, peak RSS.
_PROCESSES = (
    f"for f in {RUN}/*.pid; do p=$(cat $f); "
    "r=/proc/$p/smaps_rollup; "
    'echo "${f##*/} $(sed -n "s/^Rss: *\\([0-9]*\\).*/\\1/p" $r)'
    ' $(sed -n "s/^Pss: *\\([0-9]*\\).*/\\1/p" $r)'
    " $(awk '/^Private/ {s += $2} END {print s}' $r)"
    ' $(sed -n "s/^VmHWM:[^0-9]*\\([0-9]*\\).*/\\1/p" /proc/$p/status)"; done'
)
# The shell and the sampler are not the live system: spared by the OOM killer.
_SAMPLER = (
    "echo -1000 > /proc/$$/oom_score_adj; "
    "(while :; do sed -n 's/^MemAvailable: *\\([0-9]*\\).*/\\1/p' /proc/meminfo; "
    "usleep 100000; done > /tmp/available) & echo $! > /tmp/sampler"
)


def least_memory(program: bytes, size: tuple[int, int]) -> int:
    """The least memory limit, in 64 KiB steps from the jail's 1 MiB, under which the job
    gives the reference's output for a picture of `size`."""
    picture = sample_image(*size, seed=1)
    reference = dither(picture)

    def runs(memory: int) -> bool:
        limits = Limits(cpu_seconds=30, wall_seconds=60, memory_bytes=memory, output_bytes=1 << 20)
        try:
            return run_job(program, picture, limits).output == reference
        except (JailError, InvalidProgram):
            return False

    low, high, step = MIB, 64 * MIB, 64 << 10
    if runs(low):
        return low
    while high - low > step:
        middle = (low + high) // 2 // step * step
        low, high = (low, middle) if runs(middle) else (middle, high)
    return high


def processes(guest: Guest) -> dict[str, list[int]]:
    """kB of Rss, Pss, private and peak RSS of the fleet and each seller, by pid file."""
    _, out = guest.shell(_PROCESSES)
    found = {}
    for line in out.splitlines():
        name, *values = line.split()
        if len(values) == 4 and all(v.isdigit() for v in values):
            found[name] = [int(v) for v in values]
    return found


def available(guest: Guest) -> int:
    _, out = guest.shell("sed -n 's/^MemAvailable: *\\([0-9]*\\).*/\\1/p' /proc/meminfo")
    return int(out.split()[0])


def show(title: str, guest: Guest) -> None:
    print(f"{title}: MemAvailable {available(guest) / 1024:.1f} MiB")
    for name, (rss, pss, private, peak) in processes(guest).items():
        print(
            f"  {name:24} rss {rss / 1024:5.1f}  pss {pss / 1024:5.1f}  "
            f"private {private / 1024:5.1f}  peak rss {peak / 1024:5.1f} MiB"
        )


def batch(
    guest: Guest,
    market: SaleMarket,
    program: bytes,
    size: tuple[int, int],
    args: argparse.Namespace,
) -> None:
    """N jobs on pictures of `size`, the seller's peak reset before and read after."""
    guest.shell(f"for f in {RUN}/*.pid; do echo 5 > /proc/$(cat $f)/clear_refs; done")
    guest.shell(_SAMPLER)
    inputs = [sample_image(*size, seed=i) for i in range(args.jobs)]
    limits = replace(JOB_LIMITS, memory_bytes=args.job_memory << 20)
    ids = market.submit(program, inputs, replicas=1, limits=limits)
    started = time.monotonic()
    while len(set(ids) & set(market.done())) < len(ids) and time.monotonic() - started < 600:
        time.sleep(1)
        if not guest.running:
            raise SystemExit("QEMU exited")
    took = time.monotonic() - started
    guest.shell("kill $(cat /tmp/sampler)")
    _, out = guest.shell("sort -n /tmp/available | head -1")
    killed = guest.log_path.read_text(errors="replace").count("Out of memory: Killed")
    done = market.done()
    problems = result_problems(market, dict(zip(ids, inputs, strict=True)), done)
    print(
        f"{len(ids)} jobs on {size[0]}x{size[1]} pictures ({len(inputs[0])} B each), "
        f"{args.job_memory} MiB each, {took:.1f} s: {len(problems)} problem(s); "
        f"lowest MemAvailable {int(out.split()[0]) / 1024:.1f} MiB; "
        f"{killed} process(es) killed by the OOM killer since boot"
    )
    for problem in problems[:3]:
        print(f"  problem: {problem}")
    show(f"after the {size[0]}x{size[1]} jobs", guest)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iso", type=Path, help="ISO to boot [default: build the default one]")
    parser.add_argument("--memory", type=int, metavar="MIB", help="guest memory [QEMU's]")
    parser.add_argument("--jobs", type=int, default=8, help="jobs per picture size")
    parser.add_argument("--job-memory", type=int, default=1, metavar="MIB")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # QEMU stopped on the way out
    os.environ.update(jail_environment())
    with tempfile.TemporaryDirectory(prefix="bench-seller-memory-") as tmp:
        work = Path(tmp)
        iso = given_or_built(args.iso, work)
        program = build_fsdither(work)
        for size in ((64, 48), (640, 480)):
            least = least_memory(program, size)
            print(f"fsdither on {size[0]}x{size[1]}: runs in {least / MIB:.2f} MiB at least")
        with guest_market(work / "market") as process:
            market = SaleMarket.open(process.start())
            medium = make_medium({f"{VOLUNTEER}.cpu": market.order_file()}, work / "medium.img")
            cfg = GuestConfig(
                iso=iso,
                memory_mb=args.memory,
                shell=True,
                sticks=(medium,),
                forwards=(market.forward,),
            )
            with Guest(cfg, work / "serial.log") as guest:
                console = ConsoleEvents(guest)
                if not console.until(lambda ev: any(e.event == "enrolled" for e in ev), 240):
                    print("bench_seller_memory: the guest did not enroll", file=sys.stderr)
                    print((work / "serial.log").read_text(errors="replace")[-3000:])
                    return 1
                plan = console.first("memory")
                print(f"plan: {plan.fields if plan else 'no memory line'}")
                guest.shell("sleep 10", 60)
                show("enrolled, seller idle", guest)
                batch(guest, market, program, (64, 48), args)
                batch(guest, market, program, (640, 480), args)
                console.drain()
                power_off(guest, Report(), 30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
