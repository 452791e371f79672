"""The ISO boots under QEMU in all four ways a volunteer may start it, and says so."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from livecd.cli import main
from livecd.qemu.machine import Firmware, GuestConfig, Media
from livecd.qemu.smoke import run_smoke

pytestmark = pytest.mark.qemu

MODES = [
    pytest.param("bios", False, "cdrom", "e1000", id="bios-cdrom"),
    pytest.param("bios", False, "usb", "virtio-net-pci", id="bios-usb"),
    pytest.param("uefi", True, "cdrom", "virtio-net-pci", id="uefi-secureboot-cdrom"),
    pytest.param("uefi", True, "usb", "e1000e", id="uefi-secureboot-usb"),
]


@pytest.mark.parametrize(("firmware", "secure_boot", "media", "nic"), MODES)
def test_boot_reaches_network_up_and_powers_off(
    iso: Path,
    tmp_path: Path,
    firmware: Firmware,
    secure_boot: bool,
    media: Media,
    nic: str,
) -> None:
    cfg = GuestConfig(iso=iso, firmware=firmware, secure_boot=secure_boot, media=media, nic=nic)
    result = run_smoke(cfg, tmp_path / "serial.log", timeout=180)
    assert result.ok, result.problems
    events = [m.event for m in result.milestones]
    assert events[0] == "init" and {"network", "seccomp", "secureboot"} <= set(events)
    network = result.first("network")
    assert network is not None and network.fields["addr"] == "10.0.2.15/24"
    secureboot = result.first("secureboot")
    assert secureboot is not None
    expected = "enforced" if secure_boot else "unsupported"
    assert secureboot.fields["state"] == expected
    # The ACPI power button reached acpid, and the guest shut down cleanly.
    assert result.powered_off
    assert "cpushare: event=poweroff" in (tmp_path / "serial.log").read_text(errors="replace")


def test_smoke_command_prints_the_milestone_table(iso: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["smoke", str(iso), "--nic", "virtio-net-pci", "--log", str(tmp_path / "log")]
    )
    assert result.exit_code == 0, result.output
    table = result.stdout.splitlines()
    assert table[0].split() == ["milestone", "uptime", "wall", "details"]
    assert any(row.startswith("network ") for row in table)
    assert table[-1].startswith("power off") and "clean" in table[-1]
