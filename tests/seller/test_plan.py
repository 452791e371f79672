"""Boot-time decisions: the memory plan, the kernel options, the seats, the status table."""

from __future__ import annotations

from pathlib import Path

import pytest

from cpushare.bootopts import int_option, kernel_options
from cpushare.seller.fleet import make_seats
from cpushare.seller.plan import MIB, SELLER_RESERVE, SYSTEM_RESERVE, mem_available, plan_sellers
from cpushare.seller.status import SellerStatus, StatusFile, format_table, read_statuses


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


def test_kernel_options_keep_only_ours_and_the_last_one_wins(
    capsys: pytest.CaptureFixture[str],
) -> None:
    options = kernel_options("quiet cpushare.sellers=2 console=ttyS0 cpushare.sellers=3 cpushare.x")
    assert options == {"sellers": "3"}
    assert int_option(options, "sellers", 1, 8) == 3
    assert int_option(options, "nice", 0, 19) is None
    assert capsys.readouterr().out == ""
    assert int_option({"nice": "20"}, "nice", 0, 19) is None
    assert "cpushare.nice=20 is not a number from 0 to 19" in capsys.readouterr().out


def test_seats_share_the_orders_in_turn_with_numbered_copies(tmp_path: Path) -> None:
    a, b = tmp_path / "lab.cpu", tmp_path / "libcaca-cpu0.cpu"
    a.write_text("a")
    b.write_text("b")
    seats = make_seats([(a, 19), (b, 10)], 3, tmp_path / "copies", None)
    assert [s.name for s in seats] == ["lab-cpu0", "libcaca-cpu1", "lab-cpu2"]
    assert [s.nice for s in seats] == [19, 10, 19]
    assert [s.order_file.read_text() for s in seats] == ["a", "b", "a"]
    assert {s.nice for s in make_seats([(a, 19)], 2, tmp_path / "c2", 5)} == {5}


def test_the_status_table_lists_each_seller(tmp_path: Path) -> None:
    file = StatusFile(tmp_path, Path("lab-cpu0.cpu"), SellerStatus("o-1", "https://m"))
    file.update(state="running", job=12, jobs_done=3, cpu_seconds=4.5, coins=4.5)
    (tmp_path / "broken.json").write_text("{")
    statuses = read_statuses(tmp_path)
    assert list(statuses) == ["lab-cpu0"]
    row = format_table(statuses).splitlines()[1].split()
    assert row == ["lab-cpu0", "running", "12", "3", "4.5", "4.500"]
