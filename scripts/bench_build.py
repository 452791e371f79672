#!/usr/bin/env python3
"""Builder and boot figures: cold and warm build time, ISO and initramfs size, and the
guest uptime at "network up" in each boot mode under QEMU (TCG). Prints, asserts nothing.

    scripts/bench_build.py [--skip-cold] [--skip-boot]

Goals on a 2-core machine without KVM: warm rebuild <= 5 s, uptime at network up <= 3.5 s
under BIOS, ISO <= 20 MB with the whole seller stack (as `bench_boot.py` prints it too).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from livecd.build import BuildOptions, build
from livecd.files import cache_home
from livecd.profile import load_profile
from livecd.qemu.machine import GuestConfig
from livecd.qemu.smoke import run_smoke

MODES = [
    ("bios cdrom e1000", GuestConfig(iso=Path(), nic="e1000")),
    ("bios cdrom virtio-net", GuestConfig(iso=Path(), nic="virtio-net-pci")),
    ("bios usb virtio-net", GuestConfig(iso=Path(), media="usb", nic="virtio-net-pci")),
    (
        "uefi-sb cdrom virtio-net",
        GuestConfig(iso=Path(), firmware="uefi", secure_boot=True, nic="virtio-net-pci"),
    ),
    (
        "uefi-sb usb virtio-net",
        GuestConfig(
            iso=Path(), firmware="uefi", secure_boot=True, media="usb", nic="virtio-net-pci"
        ),
    ),
]


def timed_build(out: Path, cache: Path) -> tuple[float, int, int]:
    profile = load_profile().with_overrides(timeout=0)
    start = time.monotonic()
    result = build(BuildOptions(profile=profile, output=out, cache=cache))
    return time.monotonic() - start, result.size, result.initramfs_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-cold", action="store_true", help="no download into a new cache")
    parser.add_argument("--skip-boot", action="store_true", help="no QEMU boots")
    args = parser.parse_args()
    mib = 1 << 20
    with tempfile.TemporaryDirectory(prefix="bench-build-") as tmp:
        iso = Path(tmp) / "bench.iso"
        if not args.skip_cold:
            cold, _, _ = timed_build(iso, Path(tmp) / "cold-cache")
            print(f"build cold (empty cache, downloads)  {cold:7.2f} s")
        timed_build(iso, cache_home())  # fills the caches if they are empty
        warm = min(timed_build(iso, cache_home())[0] for _ in range(3))
        _, size, initramfs = timed_build(iso, cache_home())
        print(f"build warm (best of 3)                {warm:7.2f} s")
        print(f"ISO size                              {size / mib:7.2f} MiB")
        print(f"initramfs size                        {initramfs / mib:7.2f} MiB")
        if args.skip_boot:
            return
        for name, template in MODES:
            cfg = GuestConfig(**{**template.__dict__, "iso": iso})
            result = run_smoke(cfg, Path(tmp) / "serial.log", timeout=180)
            up = result.first("network")
            figure = f"{up.uptime:7.2f} s" if up and up.uptime is not None else "   FAILED"
            print(f"uptime at network up, {name:<24}{figure}  (wall {result.wall_seconds:.1f} s)")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
