"""The boot matrix: the machines the live CD must sell on, and what it costs them.

Each entry is a QEMU machine (NIC model, vCPUs, RAM) that must reach its first accepted
result against the loopback market. `make test-matrix` boots them all; the default test
suite boots the representative ones. `live_memory` measures what the live system itself
takes from a running guest: every process but the jobs.
"""

from __future__ import annotations

from dataclasses import dataclass

from livecd.qemu.guest import Guest

# A process in the guest, as `ps` would say it: pid, RSS and PSS in KiB, name.
_PROCESSES = (
    "for p in /proc/[0-9]*; do "
    '[ -r "$p/smaps_rollup" ] || continue; '
    'name=$(cat "$p/comm" 2>/dev/null); args=$(tr "\\0" " " < "$p/cmdline" 2>/dev/null); '
    '[ -n "$args" ] || continue; '
    'rss=$(sed -n "s/^Rss: *\\([0-9]*\\).*/\\1/p" "$p/smaps_rollup"); '
    'pss=$(sed -n "s/^Pss: *\\([0-9]*\\).*/\\1/p" "$p/smaps_rollup"); '
    'echo "${p#/proc/} $rss $pss $name"; '
    "done"
)
# The jail loader becomes the job: what it maps is the job's, not the live system's. The
# listing's own helpers come and go while it runs.
NOT_THE_LIVE_SYSTEM = frozenset({"jail-loader", "cat", "tr", "sed"})


@dataclass(frozen=True)
class MatrixEntry:
    nic: str
    cpus: int = 1
    memory_mb: int = 512
    representative: bool = False

    @property
    def id(self) -> str:
        return f"{self.nic}-{self.cpus}cpu-{self.memory_mb}mb"


MATRIX = (
    MatrixEntry("e1000"),
    MatrixEntry("e1000e"),
    MatrixEntry("virtio-net-pci"),
    MatrixEntry("rtl8139", representative=True),
    MatrixEntry("vmxnet3"),
    MatrixEntry("pcnet"),
    MatrixEntry("e1000", cpus=2),
    MatrixEntry("virtio-net-pci", cpus=4),
    MatrixEntry("e1000", memory_mb=256, representative=True),
)


@dataclass(frozen=True)
class MemoryUse:
    """User-space memory of the live system (kernel threads and jobs left out), in KiB."""

    processes: int
    rss_kib: int
    pss_kib: int
    by_name: dict[str, int]  # PSS by process name


def parse_processes(text: str) -> MemoryUse:
    """MemoryUse from the lines of the `_PROCESSES` listing."""
    rss = pss = count = 0
    by_name: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split(maxsplit=3)
        if len(parts) != 4 or not parts[1].isdigit() or not parts[2].isdigit():
            continue
        if parts[3] in NOT_THE_LIVE_SYSTEM:
            continue
        count += 1
        rss += int(parts[1])
        pss += int(parts[2])
        by_name[parts[3]] = by_name.get(parts[3], 0) + int(parts[2])
    return MemoryUse(count, rss, pss, by_name)


def live_memory(guest: Guest) -> MemoryUse:
    """What the live system uses in `guest` (which needs its shell on ttyS1)."""
    status, out = guest.shell(_PROCESSES)
    if status != 0:
        raise RuntimeError(f"the guest could not list its processes: {out[-500:]}")
    return parse_processes(out)
