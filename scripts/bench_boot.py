#!/usr/bin/env python3
"""Boot figures of the default ISO against the floor, measured in one run. Prints,
asserts nothing.

    scripts/bench_boot.py [--output ISO] [--icount]
    scripts/bench_boot.py --memory ISO    (the live memory of an ISO already built, alone)

The floor: the ISO's own kernel with a busybox initramfs (about 1 MB) whose /init prints
its uptime and powers off, booted directly under the same settings (BIOS, 1 vCPU,
virtio-net, TCG, 512 MiB): no boot loader, no unpacking worth the name, no user space;
the median of three boots.
Then the ISO sells through its boot menu and the figure is the guest uptime at its first
accepted result (the median of three sales; the milestone table is the first one's), the
order in the CD's order slot (the volunteer's path: a personal CD, `qemu -cdrom`, no USB;
one sale with the order on a USB stick is printed beside it, for reference), and
its ratio to the floor's uptime at /init (goal: at most 2.5). The
live system's own memory is MemTotal minus MemAvailable at QEMU's default 128 MiB with
one idle seller (no market, so no job, and the seller keeps trying to enroll the machine;
then with a market that has no job, once enrolled, from the volunteer's own CD: the order
in its slot, no USB device, as `qemu -cdrom` boots it; and in one line with the order on
a USB stick, what that medium costs), where it goes, and the sizes of what is booted.

With --icount, QEMU counts the guest's time in instructions (-icount shift=2,sleep=on,
single-threaded TCG): the guest's uptime no longer depends on the host's load, so two
builds compare within a few hundredths of a second, one run each; those are not the
goal's figures (an instruction costs the same here whatever it does, under TCG a page
fault or a Python opcode costs more than a hash round), and the first result is the
guest's uptime at its first job-finished line (the guest's clock is not the host's).
"""

from __future__ import annotations

import argparse
import gzip
import io
import lzma
import os
import stat
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from diskformats.compress import compress
from diskformats.cpio import Entry, write_newc
from livecd import stage1
from livecd.build import BuildOptions, BuildResult, build
from livecd.deb import unpacked
from livecd.files import cache_home
from livecd.profile import load_profile
from livecd.qemu.direct import direct_boot
from livecd.qemu.events import ConsoleEvents
from livecd.qemu.guest import Guest, scaled
from livecd.qemu.machine import GuestConfig, accelerator, counting_instructions
from livecd.qemu.matrix import live_memory
from livecd.qemu.report import Report, format_report, power_off
from livecd.qemu.sale import run_sale, with_order
from livecd.qemu.sale_market import SaleMarket, guest_market
from livecd.qemu.smoke import run_smoke
from livecd.run import need

RATIO_GOAL = 2.5
LIVE_MEMORY_GOAL_MB = 40
ISO_GOAL_MB = 20
FLOOR_BOOTS = 3
# The sale's figure varies as much as the floor's with the host's load: a median too.
SALES = 3
FLOOR_MARKER = "floor-init uptime="
FLOOR_INIT = f"""#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
echo "{FLOOR_MARKER}$(/bin/busybox cut -d' ' -f1 /proc/uptime)"
/bin/busybox poweroff -f
"""
SCREEN_UP = "[ -s /run/cpushare/screen ]"
# What the live system's memory is made of (kB lines of /proc/meminfo).
MEMINFO = ("MemTotal", "MemAvailable", "MemFree", "Cached", "Shmem", "Slab", "SReclaimable",
           "KernelStack", "PageTables", "AnonPages", "VmallocUsed", "Percpu")  # fmt: skip
# MemAvailable counts SReclaimable as reclaimable, but not all of it is (Linux 6.1's
# tracefs dentries and inodes are pinned): what is left of it, and what is free, once
# the caches are dropped.
DROPPED = ("MemFree", "SReclaimable")


@dataclass
class Sizes:
    iso: int
    initramfs: int  # as on the CD: the compressed first stage, then the image
    first_stage: int  # compressed
    first_stage_unpacked: int
    image: int  # the squashfs image, compressed by mksquashfs, unpacked as it is
    rootfs: int  # the files inside the image


def busybox_binary(built: BuildResult) -> Path:
    """The build's busybox-static binary, from the builder's cache of unpacked packages."""
    package = next(p for p in built.packages if p.name == "busybox-static")
    deb = cache_home() / "debs" / f"{package.sha256}.deb"
    return unpacked(deb, cache_home()) / "bin" / "busybox"


def floor_initramfs(busybox: Path, out: Path, epoch: int) -> int:
    """The floor's initramfs (busybox and /init, zstd as the CD's first stage); its size."""
    entries = [
        Entry("bin", stat.S_IFDIR | 0o755),
        Entry("bin/busybox", stat.S_IFREG | 0o755, source=busybox),
        Entry("dev", stat.S_IFDIR | 0o755),
        Entry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1)),
        Entry("proc", stat.S_IFDIR | 0o755),
        Entry("init", stat.S_IFREG | 0o755, data=FLOOR_INIT.encode()),
    ]
    buf = io.BytesIO()
    write_newc(entries, buf, mtime=epoch)
    data = compress(buf.getvalue(), "zstd")
    out.write_bytes(data)
    return len(data)


def floor_uptime(
    kernel: Path, append: str, initramfs: Path, work: Path, extra: tuple[str, ...] = ()
) -> float | None:
    """The floor's guest uptime at /init: the ISO's kernel and command line, booted
    directly with the floor's initramfs, on the same machine as the ISO's boots."""
    argv = [
        need("qemu-system-x86_64", "qemu-system-x86"),
        *extra,
        *("-accel", accelerator(), "-smp", "1", "-m", "512", "-machine", "pc"),
        *("-netdev", "user,id=net0,restrict=on", "-device", "virtio-net-pci,netdev=net0"),
        *("-kernel", str(kernel), "-initrd", str(initramfs), "-append", append),
        *("-display", "none", "-serial", "stdio", "-monitor", "none", "-no-reboot"),
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=scaled(300))
    (work / "floor.log").write_text(done.stdout)
    for line in done.stdout.splitlines():
        if FLOOR_MARKER in line:
            return float(line.split(FLOOR_MARKER, 1)[1].split()[0])
    return None


def sizes(built: BuildResult, initramfs: bytes, compression: str) -> Sizes:
    first_stage, _ = stage1.split(initramfs)
    return Sizes(
        iso=built.size,
        initramfs=built.initramfs_size,
        first_stage=len(first_stage),
        first_stage_unpacked=len(_decompress(first_stage.rstrip(b"\0"), compression)),
        image=built.image_size,
        rootfs=built.rootfs_size,
    )


def _decompress(data: bytes, method: str) -> bytes:
    if method == "gzip":
        return gzip.decompress(data)
    if method == "xz":
        return lzma.decompress(data)
    if method in ("zstd", "lz4"):
        return subprocess.run([method, "-dc"], input=data, capture_output=True).stdout
    return data


def _look(guest: Guest, found: dict[str, int]) -> None:
    """/proc/meminfo's MEMINFO lines and each process's PSS into `found` (KiB), once the
    status screen's first frame is painted and the seller settled."""
    # The fleet paints the status screen once its sellers are forked: wait for the
    # first frame, and for the seller to settle.
    guest.shell(f"for i in $(seq 60); do {SCREEN_UP} && break; sleep 1; done; sleep 15", 120)
    status, out = guest.shell("cat /proc/meminfo")
    for line in out.splitlines() if status == 0 else []:
        name, _, rest = line.partition(":")
        if name in MEMINFO:
            found[name] = int(rest.split()[0])
    for name, pss in live_memory(guest).by_name.items():
        found[f"pss {name}"] = pss
    status, out = guest.shell("echo 3 > /proc/sys/vm/drop_caches && cat /proc/meminfo")
    for line in out.splitlines() if status == 0 else []:
        name, _, rest = line.partition(":")
        if name in DROPPED:
            found[f"{name}, caches dropped"] = int(rest.split()[0])


def memory(iso: Path, work: Path) -> dict[str, int]:
    """/proc/meminfo (kB) and each process's PSS at QEMU's default memory, one seller
    idle: no market answers, so no job runs (and the seller keeps trying to enroll)."""
    found: dict[str, int] = {}

    def look(guest: Guest) -> list[str]:
        _look(guest, found)
        return []

    cfg = GuestConfig(iso=iso, memory_mb=None, nic="virtio-net-pci", shell=True)
    report = run_smoke(cfg, work / "memory.log", timeout=180, while_up=look)
    for problem in report.problems:
        print(f"bench_boot: problem: {problem}")
    return found


def memory_enrolled(iso: Path, work: Path, stick: bool = False) -> dict[str, int]:
    """The same with a market that has no job for it: the machine enrolled, one seller
    idle, waiting for work. The order on the volunteer's own CD (`iso` with the order in
    its slot, as the market makes it), booted with no USB device; with `stick`, the stock
    CD and the order on a CPUSHARE stick instead (a USB controller and a disk more)."""
    found: dict[str, int] = {}
    work = work / ("enrolled-stick" if stick else "enrolled-cd")
    work.mkdir(parents=True, exist_ok=True)
    with guest_market(work / "market") as process:
        market = SaleMarket.open(process.start())
        stock = GuestConfig(iso=iso, memory_mb=None, nic="virtio-net-pci", shell=True)
        cfg = with_order(stock, market, work, "stick" if stick else "cd")
        with Guest(cfg, work / "enrolled.log") as guest:
            console = ConsoleEvents(guest)
            if console.until(lambda events: any(e.event == "enrolled" for e in events), 180):
                _look(guest, found)
            else:
                print("bench_boot: problem: the guest did not enroll")
            power_off(guest, Report(), 30)
    return found


def first_result(
    iso: Path,
    work: Path,
    table: bool,
    extra: tuple[str, ...] = (),
    order_on: Literal["stick", "cd"] = "cd",
) -> float | None:
    """Guest uptime at the first accepted result (with `extra` QEMU options, at the first
    job-finished line); the milestone table (the timeline). The order in the CD's order
    slot (a personal CD, no USB: the volunteer's `qemu -cdrom`), or on a USB stick."""
    cfg = GuestConfig(iso=iso, cpus=1, nic="virtio-net-pci", extra=extra)
    work.mkdir(parents=True, exist_ok=True)
    result = run_sale(cfg, work / "sale.log", work, jobs=2, timeout=600, order_on=order_on)
    if table:
        format_report(result, print)
    for problem in result.problems:
        print(f"bench_boot: problem: {problem}")
    if extra:
        finished = result.first("job-finished")
        return finished.uptime if finished else None
    return result.sale.first_result_uptime if result.sale else None


def print_memory(mem: dict[str, int], title: str = "live system memory (128 MiB)") -> None:
    if "MemTotal" in mem and "MemAvailable" in mem:
        live = (mem["MemTotal"] - mem["MemAvailable"]) / 1024
        print(f"{title:<37} {live:5.1f} MiB (goal <= {LIVE_MEMORY_GOAL_MB})")
    for name, kib in mem.items():
        print(f"    {name:<28} {kib / 1024:7.1f} MiB")


def print_memories(idle: dict[str, int], cd: dict[str, int], stick: dict[str, int]) -> None:
    """Idle, then enrolled on the volunteer's CD (the goal's figure), then what the
    order on a USB stick costs on top (one line)."""
    print_memory(idle, "idle, no market (128 MiB)")
    print_memory(cd, "enrolled, the volunteer's CD, no USB")
    if "MemAvailable" in stick:
        live = (stick["MemTotal"] - stick["MemAvailable"]) / 1024
        title = "enrolled, the order on a USB stick"
        usb = ""
        if "MemAvailable" in cd:
            usb = f" ({(cd['MemAvailable'] - stick['MemAvailable']) / 1024:+.1f}: a USB medium)"
        print(f"{title:<37} {live:5.1f} MiB{usb}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--output", type=Path, help="keep the default profile's build here [a temporary folder]"
    )
    parser.add_argument(
        "--memory", type=Path, metavar="ISO", help="only measure this ISO's live memory"
    )
    parser.add_argument(
        "--icount",
        action="store_true",
        help="count guest time in instructions: to compare two builds, not for the goal",
    )
    args = parser.parse_args()
    extra: tuple[str, ...] = ()
    if args.icount:
        extra = counting_instructions()
    if args.memory:
        with tempfile.TemporaryDirectory(prefix="bench-boot-") as tmp:
            work = Path(tmp)
            idle = memory(args.memory, work)
            cd = memory_enrolled(args.memory, work)
            print_memories(idle, cd, memory_enrolled(args.memory, work, stick=True))
        return 0
    profile = load_profile().with_overrides(timeout=0)
    with tempfile.TemporaryDirectory(prefix="bench-boot-") as tmp:
        work = Path(tmp)
        built = build(BuildOptions(profile=profile, output=args.output or work / "bench.iso"))
        # The ISO's kernel, initramfs and command line, as its boot menu has them.
        boot = direct_boot(built.iso, work, [])
        kernel, append = Path(boot[boot.index("-kernel") + 1]), boot[boot.index("-append") + 1]
        size = sizes(built, (work / "initrd").read_bytes(), profile.compression)
        floor_img = work / "floor.img"
        floor_size = floor_initramfs(busybox_binary(built), floor_img, 1_700_000_000)
        # The floor is short and this machine's load varies: the median of a few boots.
        floors = [
            u
            for _ in range(FLOOR_BOOTS)
            if (u := floor_uptime(kernel, append, floor_img, work, extra))
        ]
        floor = statistics.median(floors) if floors else None
        firsts = [
            u
            for i in range(SALES)
            if (u := first_result(built.iso, work / f"sale{i}", i == 0, extra))
        ]
        first = statistics.median(firsts) if firsts else None
        # For reference: the order on a USB stick (xHCI, usb-storage and a FAT volume).
        stick = first_result(built.iso, work / "sale-stick", False, extra, order_on="stick")
        mem = memory(built.iso, work)
        enrolled = memory_enrolled(built.iso, work)
        on_stick = memory_enrolled(built.iso, work, stick=True)
    mib = 1024 * 1024
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"host load averages                {load} (timings vary with them)")
    print(f"floor initramfs                   {floor_size / mib:7.2f} MiB")
    print(f"floor uptime at /init             {floor or 0:7.2f} s (median of {FLOOR_BOOTS} boots)")
    runs = ", ".join(f"{u:.2f}" for u in firsts)
    print(
        f"first accepted result at uptime   {first or 0:7.2f} s (order on the CD, median of {runs})"
    )
    print(f"    the order on a USB stick      {stick or 0:7.2f} s (one sale, for reference)")
    if floor and first:
        print(f"ratio to the floor                {first / floor:7.2f}   (goal <= {RATIO_GOAL})")
    print_memories(mem, enrolled, on_stick)
    print(f"ISO                               {size.iso / mib:7.2f} MiB (goal <= {ISO_GOAL_MB} MB)")
    print(f"initramfs on the CD               {size.initramfs / mib:7.2f} MiB")
    print(f"    first stage, {profile.compression:<5}            {size.first_stage / mib:7.2f} MiB")
    print(f"    first stage, unpacked         {size.first_stage_unpacked / mib:7.2f} MiB")
    print(f"    squashfs image                {size.image / mib:7.2f} MiB")
    print(f"    files in the image            {size.rootfs / mib:7.2f} MiB")
    return 0 if floor and first else 1


if __name__ == "__main__":
    sys.exit(main())
