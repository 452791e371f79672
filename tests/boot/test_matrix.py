"""The boot matrix: each machine reaches its first accepted result against the market.

The default suite boots the representative entries; `make test-matrix` (marker `matrix`)
boots them all.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from livecd.qemu.machine import GuestConfig
from livecd.qemu.matrix import MATRIX, MatrixEntry
from livecd.qemu.sale import run_sale


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
    result = run_sale(cfg, tmp_path / "serial.log", tmp_path, jobs=2, timeout=240)
    assert result.ok, result.problems
    assert result.sale is not None and result.sale.first_result_uptime is not None
    memory = result.first("memory")
    assert memory is not None and memory.fields["sellers"] == str(entry.cpus)
    # Every job gets the memory the market asks for (32 MiB), even with 256 MB of RAM.
    assert int(memory.fields["job_memory_mb"]) >= 32
