"""The USB medium's storage drivers: which modules go, in which order, and only for a
disk on a USB bus (in a /sys/class/block tree laid out like the kernel's)."""

from __future__ import annotations

import os
from pathlib import Path

from cpushare.medium_drivers import (
    USB_STORAGE_MODULES,
    loaded_storage_modules,
    on_usb,
    release_usb_storage,
)

PROC_MODULES = """sd_mod 65536 0 - Live 0xffffffffc05d8000
t10_pi 16384 1 sd_mod, Live 0xffffffffc05d3000
uas 32768 0 - Live 0xffffffffc05ba000
usb_storage 81920 1 uas, Live 0xffffffffc0599000
scsi_mod 286720 3 sd_mod,uas,usb_storage, Live 0xffffffffc0552000
scsi_common 16384 3 uas,usb_storage,scsi_mod, Live 0xffffffffc054d000
xhci_hcd 319488 1 xhci_pci, Live 0xffffffffc04a8000
usbcore 348160 4 uas,usb_storage,xhci_pci,xhci_hcd, Live 0xffffffffc0452000
"""
USB_DISK = "devices/pci0000:00/0000:00:03.0/usb2/2-1/2-1:1.0/host0/target0:0:0/0:0:0:0/block/sda"
SATA_DISK = "devices/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0/block/sdb"


def _sys(tmp_path: Path) -> Path:
    for disk in (USB_DISK, SATA_DISK):
        (tmp_path / "sys" / disk / (disk[-3:] + "1")).mkdir(parents=True)
    block = tmp_path / "sys" / "class" / "block"
    block.mkdir(parents=True)
    for disk in (USB_DISK, SATA_DISK):
        name = disk[-3:]
        os.symlink(f"../../{disk}", block / name)
        os.symlink(f"../../{disk}/{name}1", block / f"{name}1")
    return block


def test_the_loaded_storage_modules_go_each_before_those_it_uses() -> None:
    found = loaded_storage_modules(PROC_MODULES)
    assert found == ["uas", "usb_storage", "sd_mod", "t10_pi", "scsi_mod", "scsi_common"]
    assert "usbcore" not in USB_STORAGE_MODULES and "xhci_hcd" not in USB_STORAGE_MODULES
    assert loaded_storage_modules("loop 32768 2 - Live 0x0\n") == []


def test_only_a_disk_on_a_usb_bus_is_a_usb_medium(tmp_path: Path) -> None:
    block = _sys(tmp_path)
    assert on_usb(Path("/dev/sda"), block) and on_usb(Path("/dev/sda1"), block)
    assert not on_usb(Path("/dev/sdb1"), block)
    assert not on_usb(Path("/dev/sr0"), block)  # not there at all


def test_rmmod_is_run_with_the_loaded_modules_at_the_idle_class(tmp_path: Path) -> None:
    block = _sys(tmp_path)
    modules = tmp_path / "modules"
    modules.write_text(PROC_MODULES)
    out = tmp_path / "rmmod.out"
    rmmod = tmp_path / "rmmod"
    # A stand-in rmmod that writes down its arguments and its scheduling policy.
    rmmod.write_text(f'#!/bin/sh\necho "$@" "policy=$(cut -d" " -f41 /proc/self/stat)" > {out}\n')
    rmmod.chmod(0o755)
    assert release_usb_storage(Path("/dev/sdb1"), modules, block, str(rmmod)) is None
    pid = release_usb_storage(Path("/dev/sda1"), modules, block, str(rmmod))
    assert pid is not None
    _, status = os.waitpid(pid, 0)
    assert status == 0
    policy = f"policy={os.SCHED_IDLE}"
    assert out.read_text().split() == [*loaded_storage_modules(PROC_MODULES), policy]
    modules.write_text("loop 32768 2 - Live 0x0\n")
    assert release_usb_storage(Path("/dev/sda1"), modules, block, str(rmmod)) is None
