"""How many sellers this machine can afford, how much memory each job may have, and
their seats (order, CPU and nice level each).

Computed once at boot from MemAvailable: the live system lives in RAM, so a machine with
256 MB has little to spare, and a job must never starve the sellers or the system.
"""

from __future__ import annotations

import os
from pathlib import Path

from cpushare.record import record

MIB = 1 << 20
# Kept for the rest of the live system: shells, DHCP, the page cache its programs run
# from. (The status screen is painted by the fleet, whose memory is already counted:
# its own interpreter took about 9 MiB of the 24 this was.)
SYSTEM_RESERVE = 15 * MIB
# One seller's own memory beyond what it shares with the fleet: its heap, TLS, a small
# job's input and output. Measured in the guest at 128 MiB (scripts/bench_seller_memory.py:
# private memory from smaps_rollup, five boots): 5.1-5.2 MiB enrolled and idle, 5.7-5.8
# MiB after jobs on 64x48 pictures, whose peak RSS was 0.3-0.4 MiB above the idle one's.
SELLER_BASE = 6 * MIB
# Its buffers, which scale with the machine: a job's output costs its seller about three
# times its size while in flight (the jail's read, the result, its base64 text), the
# program cache holds programs between jobs, and the jobs queued behind the running one
# (cpushare.seller.courier) hold inputs that cost up to four times their size while a
# lease's reply is read (the reply, its text, the bytes). A third of the buffers each:
# the output cap, the program cache, and the queued inputs at four times their size.
# A quarter of a seller's share of the machine goes to them, between these bounds; the
# least still lets a job write 1 MiB. Measured with the least (1 MiB of output, 256 KiB
# of queued input): jobs on 640x480 pictures (300 KB in, 300 KB out) took the seller's
# peak RSS 5-9 MiB above the idle seller's, more than these buffers; the lowest
# MemAvailable while they ran was 11-21 MiB (25.3-25.6 idle), room the system's reserve
# keeps. With 4 MiB of output and 1 MiB of queued input (the most), the same jobs ran a
# 128 MiB machine out of memory.
BUFFERS_MAX = 12 * MIB
BUFFERS_MIN = 3 * MIB
# On a machine without a plan (a seller started alone, the Debian package's), the most.
JOB_OUTPUT_BYTES = BUFFERS_MAX // 3
PROGRAM_CACHE_BYTES = BUFFERS_MAX // 3
QUEUE_INPUT_BYTES = BUFFERS_MAX // 3 // 4
# The most a seller ever keeps for itself beyond its jobs: its base and its buffers.
SELLER_RESERVE = SELLER_BASE + BUFFERS_MAX
# Below this a job can do little; fewer sellers with more memory each are better.
MIN_JOB_MEMORY = 16 * MIB


@record(frozen=True)
class Plan:
    """Sellers to run, the memory cap of each one's jobs, and each seller's buffers."""

    available: int
    wanted: int
    sellers: int
    job_memory_bytes: int
    job_output_bytes: int = JOB_OUTPUT_BYTES
    program_cache_bytes: int = PROGRAM_CACHE_BYTES
    queue_input_bytes: int = QUEUE_INPUT_BYTES

    @property
    def seller_reserve(self) -> int:
        """What each seller keeps for itself beyond its jobs' memory."""
        buffers = self.job_output_bytes + self.program_cache_bytes + 4 * self.queue_input_bytes
        return SELLER_BASE + buffers


def seller_buffers(share: int) -> int:
    """The buffers of a seller whose share of the machine (its jobs and itself) is
    `share`: a quarter of it, between BUFFERS_MIN and BUFFERS_MAX, in whole 3 MiB steps
    (a third each, in whole MiB)."""
    step = 3 * MIB
    return min(BUFFERS_MAX, max(BUFFERS_MIN, share // 4 // step * step))


def plan_sellers(available: int, wanted: int) -> Plan:
    """At most `wanted` sellers, each with its reserve (a base and buffers that shrink
    with the machine) and its jobs capped so all of them fit into `available`. Always at
    least one seller: on a machine too small even for that, its cap is the jail's minimum
    and the market simply offers it only the jobs that ask no more."""
    usable = max(0, available - SYSTEM_RESERVE)
    sellers = max(1, min(wanted, usable // (SELLER_BASE + BUFFERS_MIN + MIN_JOB_MEMORY)))
    while True:
        buffers = seller_buffers(usable // sellers)
        per_job = (usable - sellers * (SELLER_BASE + buffers)) // sellers
        if sellers == 1 or per_job >= MIN_JOB_MEMORY:
            break
        sellers -= 1  # more buffers each left too little for the jobs
    job_memory = max(MIB, per_job // MIB * MIB)
    third = buffers // 3
    return Plan(available, wanted, sellers, job_memory, third, third, third // 4)


def mem_available(meminfo: Path = Path("/proc/meminfo")) -> int:
    """MemAvailable in bytes: what can be used without swapping (there is no swap)."""
    for line in meminfo.read_text().splitlines():
        name, _, value = line.partition(":")
        if name == "MemAvailable":
            return int(value.split()[0]) * 1024
    raise ValueError(f"{meminfo} has no MemAvailable line")


@record(frozen=True)
class Seat:
    """One seller's place: its copy of an order, its CPU and its nice level (and the
    order file it is a copy of)."""

    name: str
    order_file: Path
    cpu: int
    nice: int
    source: Path | None = None


def make_seats(
    orders: list[tuple[Path, int]], count: int, copies: Path, nice: int | None
) -> list[Seat]:
    """`count` seats sharing the orders in turn, one per online CPU in turn; each gets
    its own copy of its order, named as the original instructions named them by hand
    (libcaca-cpu0.cpu, libcaca-cpu1.cpu)."""
    copies.mkdir(parents=True, exist_ok=True)
    cpus = sorted(os.sched_getaffinity(0))
    seats = []
    for i in range(count):
        order, order_nice = orders[i % len(orders)]
        stem = order.stem.rsplit("-cpu", 1)[0] if "-cpu" in order.stem else order.stem
        name = f"{stem}-cpu{i}"
        copy = copies / f"{name}.cpu"
        copy.write_bytes(order.read_bytes())  # an order is at most 64 KiB
        cpu = cpus[i % len(cpus)]
        seats.append(Seat(name, copy, cpu, order_nice if nice is None else nice, order))
    return seats
