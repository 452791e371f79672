"""Finding the CPUSHARE medium: labels read from real FAT and ISO 9660 images, removable
disks told from fixed ones in a /sys/block tree laid out like the kernel's."""

from __future__ import annotations

import io
from pathlib import Path

import pycdlib

from cpushare.medium import (
    Medium,
    find_medium,
    removable_volumes,
    usb_storage_settling,
    volume,
    volume_label,
)
from diskformats.fat import make_fat_image

ORDERS = {"volunteer.cpu": b"order\n"}


def _fat(label: str) -> bytes:
    return make_fat_image(ORDERS, label=label, volume_id=0x1234, mtime=0)


def _iso(volume_id: str) -> bytes:
    iso = pycdlib.PyCdlib()
    iso.new(vol_ident=volume_id)
    out = io.BytesIO()
    iso.write_fp(out)
    iso.close()
    return out.getvalue()


def _disk(sys_block: Path, name: str, removable: str | None, *partitions: str) -> None:
    disk = sys_block / name
    disk.mkdir(parents=True)
    if removable is not None:
        (disk / "removable").write_text(removable + "\n")
    for part in partitions:
        (disk / part).mkdir()
    (disk / "queue").mkdir()  # not a partition


def test_fat_and_iso_labels_are_read_and_anything_else_has_none() -> None:
    assert volume_label(_fat("CPUSHARE")) == "CPUSHARE"
    assert volume_label(_fat("OTHER")) == "OTHER"
    assert volume_label(_iso("CPUSHARE")) == "CPUSHARE"
    assert volume_label(bytes(40 * 1024)) is None
    assert volume_label(_fat("CPUSHARE")[:100]) is None


def test_the_filesystem_is_told_by_its_header_to_be_mounted_by_name() -> None:
    assert volume(_fat("CPUSHARE")) == ("vfat", "CPUSHARE")
    assert volume(_iso("CPUSHARE")) == ("iso9660", "CPUSHARE")
    assert volume(bytes(40 * 1024)) is None


def test_only_removable_disks_and_optical_drives_are_looked_at(tmp_path: Path) -> None:
    sys_block, dev = tmp_path / "sys" / "block", tmp_path / "dev"
    _disk(sys_block, "sda", "0", "sda1")
    _disk(sys_block, "sdb", "1", "sdb1")
    _disk(sys_block, "sr0", None)
    assert removable_volumes(sys_block) == ["sdb", "sdb1", "sr0"]
    dev.mkdir()
    # The fixed disk carries the label too: it is never even opened.
    (dev / "sda1").write_bytes(_fat("CPUSHARE"))
    (dev / "sdb").write_bytes(bytes(64 * 1024))
    assert find_medium(dev, sys_block) is None  # sdb1 and sr0 absent: an empty drive
    (dev / "sdb1").write_bytes(_fat("CPUSHARE"))
    assert find_medium(dev, sys_block) == Medium(dev / "sdb1", "vfat")
    (dev / "sr0").write_bytes(_iso("CPUSHARE"))
    (dev / "sdb1").write_bytes(_fat("OTHER"))
    assert find_medium(dev, sys_block) == Medium(dev / "sr0", "iso9660")
    assert removable_volumes(tmp_path / "nothing") == []


def test_a_usb_stick_is_settling_until_its_disk_appears(tmp_path: Path) -> None:
    usb = tmp_path / "usb"
    assert not usb_storage_settling(usb)
    (usb / "1-1:1.0").mkdir(parents=True)
    (usb / "1-1:1.0" / "bInterfaceClass").write_text("03\n")  # a keyboard
    assert not usb_storage_settling(usb)
    stick = usb / "2-1:1.0"
    stick.mkdir()
    (stick / "bInterfaceClass").write_text("08\n")
    assert usb_storage_settling(usb)
    (stick / "host0" / "target0:0:0" / "0:0:0:0" / "block" / "sdb").mkdir(parents=True)
    assert not usb_storage_settling(usb)
