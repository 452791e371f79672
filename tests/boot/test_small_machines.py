"""The smallest machines the live CD is meant for: 96 MiB under BIOS, and 256 MiB under
UEFI (with Secure Boot and without).

The 96 MiB sale takes well under a minute of guest time and runs in the default suite
(marker `qemu`); the UEFI ones take minutes each: `make test-matrix` (marker `matrix`).
UEFI at 256 MiB boots and sells (Debian 12's GRUB 2.06 could not load the kernel below
about 320 MiB; Debian 13's signed systemd-boot, the ESP's now, can)."""

from __future__ import annotations

from pathlib import Path

import pytest

from livecd.qemu.machine import GuestConfig
from livecd.qemu.sale import run_sale
from livecd.qemu.sale_market import JOB_LIMITS

pytestmark = pytest.mark.qemu


def test_96_mib_sells_end_to_end(iso: Path, tmp_path: Path) -> None:
    # SeaBIOS, QEMU's own NIC, 96 MiB: Debian 12's signed kernel keeps about 48 MiB for
    # good, the first stage finds about 25 MiB available (of the 21 it needs) and the
    # fleet about 13 when it plans: one seller whose jobs may have the jail's least,
    # 1 MiB, which the sale's jobs ask. The guest alone runs them (no validator), its
    # order in the CD's slot (no USB).
    cfg = GuestConfig(iso=iso, memory_mb=96)
    result = run_sale(
        cfg, tmp_path / "serial.log", tmp_path, jobs=4, timeout=240, replicas=1, order_on="cd"
    )
    assert result.ok, result.problems
    plan = result.first("memory")
    assert plan is not None and plan.fields["sellers"] == "1", plan
    assert int(plan.fields["job_memory_mb"]) << 20 >= JOB_LIMITS.memory_bytes, plan.fields
    # Every job leased, run and accepted, equal to the reference (run_sale checks the
    # results' bytes and the coins).
    assert result.sale is not None and result.sale.accepted == 4
    assert result.sale.first_result_uptime is not None
    print(
        f"96 MiB: {plan.fields['available_mb']} MiB available at the plan; first accepted "
        f"result at guest uptime {result.sale.first_result_uptime:.1f} s"
    )
    console = (tmp_path / "serial.log").read_text(errors="replace")
    assert "Traceback" not in console and "Out of memory" not in console


@pytest.mark.matrix
@pytest.mark.parametrize("secure_boot", [True, False], ids=["secure-boot", "no-secure-boot"])
def test_uefi_at_256_mib_boots_and_sells(iso: Path, tmp_path: Path, secure_boot: bool) -> None:
    cfg = GuestConfig(iso=iso, firmware="uefi", secure_boot=secure_boot, memory_mb=256)
    result = run_sale(cfg, tmp_path / "serial.log", tmp_path, jobs=1, timeout=150)
    assert result.ok, result.problems
    assert result.sale is not None and result.sale.first_result_uptime is not None
    secureboot = result.first("secureboot")
    assert secureboot is not None
    assert secureboot.fields["state"] == ("enforced" if secure_boot else "off")
