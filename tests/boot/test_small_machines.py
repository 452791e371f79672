"""The smallest machines the live CD is meant for: 96 MiB under BIOS, and 256 MiB under
UEFI (with Secure Boot and without). Minutes of guest time each: `make test-matrix`
(marker `matrix`).

The 96 MiB one fails today, for the cause measured below (`scripts/bench_boot.py` gives
the figures): an expected failure that turns into an error the day it passes, so that the
mark comes off with the fix. UEFI at 256 MiB boots and sells (Debian 12's GRUB 2.06
could not load the kernel below about 320 MiB; Debian 13's signed systemd-boot, the
ESP's now, can)."""

from __future__ import annotations

from pathlib import Path

import pytest

from livecd.qemu.machine import GuestConfig
from livecd.qemu.sale import run_sale

pytestmark = [pytest.mark.qemu, pytest.mark.matrix]


@pytest.mark.xfail(
    strict=True,
    reason="the kernel keeps ~48 MiB for good (its code, data and 17 MiB of bss): the "
    "initramfs unpacks (since tracefs's event tree is not built beside it), but the first "
    "stage finds 24 MiB available of the 40 needed and says so; the live system's own "
    "~40 MiB leave such a machine (~48 MiB MemTotal) next to nothing for a job",
)
def test_96_mib_boots_and_sells(iso: Path, tmp_path: Path) -> None:
    cfg = GuestConfig(iso=iso, memory_mb=96)
    result = run_sale(cfg, tmp_path / "serial.log", tmp_path, jobs=1, timeout=120)
    assert result.ok, result.problems
    assert result.sale is not None and result.sale.first_result_uptime is not None


@pytest.mark.parametrize("secure_boot", [True, False], ids=["secure-boot", "no-secure-boot"])
def test_uefi_at_256_mib_boots_and_sells(iso: Path, tmp_path: Path, secure_boot: bool) -> None:
    cfg = GuestConfig(iso=iso, firmware="uefi", secure_boot=secure_boot, memory_mb=256)
    result = run_sale(cfg, tmp_path / "serial.log", tmp_path, jobs=1, timeout=150)
    assert result.ok, result.problems
    assert result.sale is not None and result.sale.first_result_uptime is not None
    secureboot = result.first("secureboot")
    assert secureboot is not None
    assert secureboot.fields["state"] == ("enforced" if secure_boot else "off")
