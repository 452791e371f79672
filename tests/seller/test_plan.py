"""The memory plan: how many sellers a machine affords, how much memory each job gets, and
each seller's buffers (output cap, program cache, queued inputs), which shrink with the
machine. The figures are what the fleet finds available at its plan (MemAvailable) on
machines of 128, 256 and 1024 MiB."""

from __future__ import annotations

from pathlib import Path

import pytest

from cpushare.seller.plan import (
    BUFFERS_MIN,
    JOB_OUTPUT_BYTES,
    MIB,
    MIN_JOB_MEMORY,
    PROGRAM_CACHE_BYTES,
    QUEUE_INPUT_BYTES,
    SELLER_BASE,
    SELLER_RESERVE,
    SYSTEM_RESERVE,
    Plan,
    mem_available,
    plan_sellers,
)
from livecd.qemu.sale_market import JOB_LIMITS

# MemAvailable at the fleet's plan (the `memory` console line), one CPU each.
AT_128_MIB = 26 * MIB
AT_256_MIB = 150 * MIB
AT_1024_MIB = 900 * MIB


def _used(plan: Plan) -> int:
    return SYSTEM_RESERVE + plan.sellers * (plan.seller_reserve + plan.job_memory_bytes)


def test_qemus_default_128_mib_sells_the_sales_jobs() -> None:
    plan = plan_sellers(AT_128_MIB, 1)
    assert plan.sellers == 1 and plan.job_memory_bytes == 2 * MIB
    # The end-to-end sale's jobs (livecd smoke --market) are offered to this machine.
    assert plan.job_memory_bytes >= JOB_LIMITS.memory_bytes
    assert plan.job_output_bytes >= JOB_LIMITS.output_bytes
    # Its buffers are the least: a third each, the queued inputs at four times their size.
    assert plan.seller_reserve == SELLER_BASE + BUFFERS_MIN
    assert plan.job_output_bytes == plan.program_cache_bytes == 4 * plan.queue_input_bytes
    assert plan.job_output_bytes < JOB_OUTPUT_BYTES and plan.queue_input_bytes < QUEUE_INPUT_BYTES
    assert AT_128_MIB - MIB < _used(plan) <= AT_128_MIB


def test_256_mib_gives_each_seller_its_full_buffers_and_room_for_jobs() -> None:
    plan = plan_sellers(AT_256_MIB, 2)
    assert plan.sellers == 2 and plan.job_memory_bytes >= 32 * MIB
    assert (plan.job_output_bytes, plan.program_cache_bytes, plan.queue_input_bytes) == (
        JOB_OUTPUT_BYTES,
        PROGRAM_CACHE_BYTES,
        QUEUE_INPUT_BYTES,
    )
    assert plan.seller_reserve == SELLER_RESERVE
    assert _used(plan) <= AT_256_MIB


def test_1024_mib_runs_every_seller_and_the_jobs_share_what_is_left() -> None:
    plan = plan_sellers(AT_1024_MIB, 4)
    assert (plan.sellers, plan.wanted) == (4, 4)
    assert plan.job_memory_bytes % MIB == 0 and plan.seller_reserve == SELLER_RESERVE
    assert AT_1024_MIB - 4 * MIB < _used(plan) <= AT_1024_MIB


def test_the_buffers_grow_with_the_machine_and_never_past_their_cap() -> None:
    plans = [plan_sellers(mib * MIB, 1) for mib in range(20, 200, 2)]
    outputs = [p.job_output_bytes for p in plans]
    assert outputs == sorted(outputs) and outputs[0] < outputs[-1] == JOB_OUTPUT_BYTES
    assert all(p.job_output_bytes % MIB == 0 for p in plans)
    assert all(_used(p) <= p.available for p in plans if p.job_memory_bytes > MIB)


def test_many_cpus_on_little_memory_get_fewer_sellers_rather_than_starved_ones() -> None:
    plan = plan_sellers(170 * MIB, 8)
    assert 1 <= plan.sellers < 8
    assert plan.job_memory_bytes >= MIN_JOB_MEMORY
    assert _used(plan) <= 170 * MIB


def test_a_tiny_machine_still_runs_one_seller_with_the_smallest_jobs() -> None:
    plan = plan_sellers(20 * MIB, 2)
    assert (plan.sellers, plan.job_memory_bytes) == (1, MIB)
    assert plan.job_output_bytes >= JOB_LIMITS.output_bytes


def test_mem_available_reads_meminfo(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal: 500 kB\nMemFree: 100 kB\nMemAvailable:  300 kB\n")
    assert mem_available(meminfo) == 300 * 1024
    meminfo.write_text("MemTotal: 500 kB\n")
    with pytest.raises(ValueError, match="MemAvailable"):
        mem_available(meminfo)
