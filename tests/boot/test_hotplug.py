"""Devices that appear once the live system is up: busybox `mdev -d` (rules in
/etc/mdev.conf) loads their drivers by modalias and gives a new wired link DHCP, and
leaves devtmpfs's device nodes as they are."""

from __future__ import annotations

from pathlib import Path

import pytest

from diskformats.fat import make_fat_image
from livecd.qemu.events import ConsoleEvents
from livecd.qemu.guest import Guest
from livecd.qemu.machine import GuestConfig

EPOCH = 1_700_000_000
# Nodes every user needs as they are (the sellers write to /dev/null): had mdev applied
# its default rule to them, they would be root's and 0660.
SHARED_NODES = ("/dev/null", "/dev/zero", "/dev/urandom", "/dev/tty")


@pytest.mark.qemu
def test_a_usb_network_adapter_plugged_in_later_comes_up(iso: Path, tmp_path: Path) -> None:
    """With the system up (a stick attached at boot, so the USB host controller is
    there), a USB network adapter is plugged in: its driver loads and it gets DHCP."""
    stick = tmp_path / "stick.img"
    image = make_fat_image({"notes.txt": b"mine"}, label="FAMILY", volume_id=0x1234, mtime=EPOCH)
    stick.write_bytes(image.ljust(4 << 20, b"\0"))
    cfg = GuestConfig(iso=iso, sticks=(stick,), shell=True)
    with Guest(cfg, tmp_path / "serial.log") as guest:
        console = ConsoleEvents(guest)
        assert console.wait("network", 180, iface="eth0"), "the built-in NIC got no address"
        assert "return" in guest.qmp("netdev_add", type="user", id="usbnet", restrict=True)
        plugged = guest.qmp("device_add", driver="usb-net", bus="xhci.0", netdev="usbnet")
        assert "return" in plugged, plugged
        up = console.wait("network", 60, iface="usb0")
        assert up is not None, "the USB network adapter plugged in later got no address"
        _, drivers = guest.shell("cat /proc/modules")
        assert "cdc_ether " in drivers
        _, partitions = guest.shell("cat /proc/partitions")
        assert "sda" in partitions.split(), "the stick's disk did not appear"
        _, delay = guest.shell("cat /sys/module/usb_storage/parameters/delay_use")
        assert delay.strip() == "0"
        _, modes = guest.shell(f"stat -c '%n %a %U:%G' {' '.join(SHARED_NODES)}")
        assert modes.split("\n")[: len(SHARED_NODES)] == [
            f"{node} 666 root:root" for node in SHARED_NODES
        ]
