"""The boot matrix: each machine reaches its first accepted result against the market.

The default suite boots the representative entries; `make test-matrix` (marker `matrix`)
boots them all.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from livecd.e2e import run_market_smoke
from livecd.matrix import MATRIX, MatrixEntry, parse_processes
from livecd.qemu import GuestConfig


def _entries() -> list[object]:
    return [
        pytest.param(
            entry,
            id=entry.id,
            marks=[pytest.mark.qemu] + ([] if entry.representative else [pytest.mark.matrix]),
        )
        for entry in MATRIX
    ]


@pytest.mark.parametrize("entry", _entries())
def test_the_machine_sells_one_seller_per_cpu_until_its_first_result(
    iso: Path, tmp_path: Path, entry: MatrixEntry
) -> None:
    cfg = GuestConfig(iso=iso, nic=entry.nic, cpus=entry.cpus, memory_mb=entry.memory_mb)
    result = run_market_smoke(cfg, tmp_path / "serial.log", tmp_path, jobs=2, timeout=240)
    assert result.ok, result.problems
    assert result.first_result_uptime is not None
    memory = result.first("memory")
    assert memory is not None and memory.fields["sellers"] == str(entry.cpus)
    # Every job gets the memory the market asks for (32 MiB), even with 256 MB of RAM.
    assert int(memory.fields["job_memory_mb"]) >= 32


def test_the_memory_listing_leaves_jobs_and_its_own_helpers_out() -> None:
    listing = "\n".join(
        [
            "1 1468 218 init",
            "204 22224 11422 python3.11",
            "289 22060 10909 python3.11",
            "300 5000 4000 jail-loader",
            "301 1300 200 sed",
            "302 garbage",
        ]
    )
    use = parse_processes(listing)
    assert (use.processes, use.rss_kib, use.pss_kib) == (3, 45752, 22549)
    assert use.by_name == {"init": 218, "python3.11": 22331}
