"""How many sellers this machine can afford, how much memory each job may have, and
their seats (order, CPU and nice level each).

Computed once at boot from MemAvailable: the live system lives in RAM, so a machine with
256 MB has little to spare, and a job must never starve the sellers or the system.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

MIB = 1 << 20
# Kept for the rest of the live system: shells, DHCP, the page cache its programs run
# from. (The status screen is painted by the fleet, whose memory is already counted:
# its own interpreter took about 9 MiB of the 24 this was.)
SYSTEM_RESERVE = 15 * MIB
# One seller's own needs beyond what it shares with the others: its heap, TLS, the
# job's input and output while they are in flight, its program cache.
SELLER_RESERVE = 16 * MIB
# Out of that reserve: a job's output costs its seller about three times its size while
# in flight (the jail's read, the result, its base64 text), so outputs get a quarter of
# it, and the program cache another quarter. The jobs queued behind the running one
# (cpushare.seller.courier) get a quarter of it for their inputs, each costing up to
# four times its size while its lease's reply is read (the reply, its text, the bytes).
JOB_OUTPUT_BYTES = SELLER_RESERVE // 4
PROGRAM_CACHE_BYTES = SELLER_RESERVE // 4
QUEUE_INPUT_BYTES = SELLER_RESERVE // 4 // 4
# Below this a job can do little; fewer sellers with more memory each are better.
MIN_JOB_MEMORY = 16 * MIB


@dataclass(frozen=True)
class Plan:
    """Sellers to run and the memory cap of each one's jobs."""

    available: int
    wanted: int
    sellers: int
    job_memory_bytes: int
    job_output_bytes: int = JOB_OUTPUT_BYTES
    program_cache_bytes: int = PROGRAM_CACHE_BYTES


def plan_sellers(available: int, wanted: int) -> Plan:
    """At most `wanted` sellers, each job capped so all of them fit into `available`.
    Always at least one seller: on a machine too small even for that, its cap is the
    jail's minimum and the market simply offers it nothing."""
    usable = max(0, available - SYSTEM_RESERVE)
    affordable = usable // (SELLER_RESERVE + MIN_JOB_MEMORY)
    sellers = max(1, min(wanted, affordable))
    per_job = (usable - sellers * SELLER_RESERVE) // sellers
    job_memory = max(MIB, per_job // MIB * MIB)
    return Plan(available, wanted, sellers, job_memory)


def mem_available(meminfo: Path = Path("/proc/meminfo")) -> int:
    """MemAvailable in bytes: what can be used without swapping (there is no swap)."""
    for line in meminfo.read_text().splitlines():
        name, _, value = line.partition(":")
        if name == "MemAvailable":
            return int(value.split()[0]) * 1024
    raise ValueError(f"{meminfo} has no MemAvailable line")


@dataclass(frozen=True)
class Seat:
    """One seller's place: its copy of an order, its CPU and its nice level."""

    name: str
    order_file: Path
    cpu: int
    nice: int


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
        shutil.copyfile(order, copy)
        seats.append(Seat(name, copy, cpus[i % len(cpus)], order_nice if nice is None else nice))
    return seats
