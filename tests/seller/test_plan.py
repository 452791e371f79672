"""The memory plan: how many sellers a machine affords and how much memory each job gets."""

from __future__ import annotations

from pathlib import Path

import pytest

from cpushare.seller.plan import MIB, SELLER_RESERVE, SYSTEM_RESERVE, mem_available, plan_sellers


def test_a_big_machine_runs_every_seller_and_the_jobs_share_what_is_left() -> None:
    plan = plan_sellers(4096 * MIB, 4)
    assert (plan.sellers, plan.wanted) == (4, 4)
    assert plan.job_memory_bytes % MIB == 0
    total = SYSTEM_RESERVE + 4 * (SELLER_RESERVE + plan.job_memory_bytes)
    assert 4096 * MIB - 4 * MIB < total <= 4096 * MIB


def test_a_256_mb_machine_gets_fewer_sellers_rather_than_starved_ones() -> None:
    # What a 256 MB guest has left once the kernel and the live system are in RAM.
    plan = plan_sellers(170 * MIB, 8)
    assert 1 <= plan.sellers < 8
    assert plan.job_memory_bytes >= 16 * MIB
    used = SYSTEM_RESERVE + plan.sellers * (SELLER_RESERVE + plan.job_memory_bytes)
    assert used <= 170 * MIB


def test_a_tiny_machine_still_runs_one_seller_with_the_smallest_jobs() -> None:
    plan = plan_sellers(20 * MIB, 2)
    assert (plan.sellers, plan.job_memory_bytes) == (1, MIB)


def test_mem_available_reads_meminfo(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal: 500 kB\nMemFree: 100 kB\nMemAvailable:  300 kB\n")
    assert mem_available(meminfo) == 300 * 1024
    meminfo.write_text("MemTotal: 500 kB\n")
    with pytest.raises(ValueError, match="MemAvailable"):
        mem_available(meminfo)
