"""A USB stick's storage drivers, unloaded once its orders are read.

Nothing reads the CPUSHARE medium again once its orders are copied, but the drivers its
USB stick loaded stay in the kernel: usb-storage, uas, the SCSI disk and the SCSI core
(their code, their kernel threads, the disk's queue), about 0.8 MiB at QEMU's default
128 MiB. They are unloaded in a process of their own at the idle scheduling class, not
waited for: taking them down waits for the kernel's grace periods (0.24 s under
emulation), which the first sale does not wait for. A stick plugged in later loads them
again (mdev, by modalias). The USB host controller's drivers stay: keyboards use them.
"""

from __future__ import annotations

import os
from pathlib import Path

# Each before the modules it uses: rmmod takes them down in this order and stops at the
# first one still in use (say, sd_mod for a machine's own SATA disk).
USB_STORAGE_MODULES = (
    "uas",
    "usb_storage",
    "sd_mod",
    "t10_pi",
    "crc64_rocksoft",
    "crc64",
    "crc_t10dif",
    "crct10dif_common",
    "scsi_mod",
    "scsi_common",
)
RMMOD = "/sbin/rmmod"


def on_usb(device: Path, sys_class_block: Path = Path("/sys/class/block")) -> bool:
    """Whether the disk or partition `device` (/dev/NAME) sits on a USB bus."""
    return "/usb" in os.path.realpath(sys_class_block / device.name)


def loaded_storage_modules(proc_modules: str) -> list[str]:
    """The USB storage modules that /proc/modules lists, in unloading order."""
    loaded = {line.split(" ", 1)[0] for line in proc_modules.splitlines()}
    return [name for name in USB_STORAGE_MODULES if name in loaded]


def release_usb_storage(
    device: Path,
    proc_modules: Path = Path("/proc/modules"),
    sys_class_block: Path = Path("/sys/class/block"),
    rmmod: str = RMMOD,
) -> int | None:
    """Start unloading the storage drivers of the USB medium `device`, read for the
    last time, at the idle scheduling class: rmmod's pid (the caller's child, to reap
    or leave to init), None when there is nothing to unload (not a USB disk, no such
    module loaded) or no rmmod to do it."""
    if not on_usb(device, sys_class_block):
        return None
    try:
        names = loaded_storage_modules(proc_modules.read_text())
    except OSError:
        return None
    if not names or not os.access(rmmod, os.X_OK):
        return None
    pid = os.fork()
    if pid == 0:  # never returns into the caller's code
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            os.execv(rmmod, ["rmmod", *names])
        finally:
            os._exit(127)
    return pid
