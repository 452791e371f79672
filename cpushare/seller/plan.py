"""How many sellers this machine can afford and how much memory each job may have.

Computed once at boot from MemAvailable: the live system lives in RAM, so a machine with
256 MB has little to spare, and a job must never starve the sellers or the system.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MIB = 1 << 20
# Kept for the rest of the live system: shells, the status screen, DHCP, page cache.
SYSTEM_RESERVE = 24 * MIB
# One seller's own needs beyond what it shares with the others: its heap, TLS, the
# job's input and output while they are in flight.
SELLER_RESERVE = 16 * MIB
# Below this a job can do little; fewer sellers with more memory each are better.
MIN_JOB_MEMORY = 16 * MIB


@dataclass(frozen=True)
class Plan:
    """Sellers to run and the memory cap of each one's jobs."""

    available: int
    wanted: int
    sellers: int
    job_memory_bytes: int


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
