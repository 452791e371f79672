"""Finding the removable medium labelled CPUSHARE that carries a volunteer's orders.

Only removable disks (USB sticks, SD cards) and optical drives are looked at: the live
system reads not even a label from the machine's own disks. A FAT volume label (FAT12/16
or FAT32 boot sector) or an ISO 9660 volume id of CPUSHARE matches; its filesystem is
mounted by name, so that the kernel loads that one module when it is first asked for.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from cpushare.record import record

LABEL = "CPUSHARE"
_ISO_PVD = 16 * 2048


@record(frozen=True)
class Medium:
    device: Path
    filesystem: str  # as mount -t names it: vfat or iso9660


def volume(head: bytes) -> tuple[str, str] | None:
    """The filesystem (vfat or iso9660) and the FAT volume label or ISO 9660 volume id of
    a volume's first 34 KiB, if any."""
    if len(head) >= _ISO_PVD + 72 and head[_ISO_PVD : _ISO_PVD + 6] == b"\x01CD001":
        return "iso9660", head[_ISO_PVD + 40 : _ISO_PVD + 72].decode("ascii", "replace").strip()
    if len(head) >= 512 and head[510:512] == b"\x55\xaa":
        for offset in (0x26, 0x42):  # FAT12/16 and FAT32 extended boot signature
            if head[offset] == 0x29 and head[offset + 16 : offset + 24].startswith(b"FAT"):
                return "vfat", head[offset + 5 : offset + 16].decode("ascii", "replace").strip()
    return None


def volume_label(head: bytes) -> str | None:
    """The FAT volume label or ISO 9660 volume id of a volume's first 34 KiB, if any."""
    found = volume(head)
    return found[1] if found else None


def removable_volumes(sys_block: Path = Path("/sys/block")) -> list[str]:
    """Device names of removable disks and optical drives, and of their partitions."""
    names = []
    for disk in sorted(sys_block.iterdir()) if sys_block.is_dir() else []:
        removable = (
            (disk / "removable").read_text().strip() == "1"
            if (disk / "removable").exists()
            else False
        )
        if not (removable or disk.name.startswith("sr")):
            continue
        names.append(disk.name)
        names += sorted(p.name for p in disk.iterdir() if p.name.startswith(disk.name))
    return names


def find_medium(dev: Path = Path("/dev"), sys_block: Path = Path("/sys/block")) -> Medium | None:
    for name in removable_volumes(sys_block):
        try:
            fd = os.open(dev / name, os.O_RDONLY | os.O_NONBLOCK)
        except OSError:
            continue  # an empty drive, or one that went away
        try:
            head = os.pread(fd, _ISO_PVD + 2048, 0)
        except OSError:
            continue
        finally:
            os.close(fd)
        found = volume(head)
        if found is not None and found[1] == LABEL:
            return Medium(dev / name, found[0])
    return None


def usb_storage_settling(usb: Path = Path("/sys/bus/usb/devices")) -> bool:
    """Whether a USB mass-storage device is attached whose disk has not appeared yet."""
    for interface in usb.glob("*:*") if usb.is_dir() else []:
        cls = interface / "bInterfaceClass"
        is_storage = cls.exists() and cls.read_text().strip() == "08"
        if is_storage and not any(interface.glob("host*/target*/*/block/*")):
            return True
    return False


def load_drivers(sys_bus: Path = Path("/sys/bus")) -> None:
    """Load the drivers of the devices there are, as /init's pass and mdev do: for a
    stick still being set up, so as not to wait for mdev's turn."""
    import subprocess  # only while a USB stick settles

    aliases = {p.read_text().strip() for p in sys_bus.glob("*/devices/*/modalias")}
    subprocess.run(["modprobe", "-qab", *sorted(aliases)], check=False)


def wait_for_medium(limit: float = 5.0) -> Medium | None:
    """The CPUSHARE medium, waiting (at most `limit` seconds) only while a USB stick is
    still being set up: a boot without one does not wait at all, nor load anything (the
    devices' drivers were loaded as they appeared, by /init's pass and mdev)."""
    deadline = time.monotonic() + limit
    while (found := find_medium()) is None and usb_storage_settling():
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
        load_drivers()
    return found
