"""The kernel command line of every boot entry: the profile's, then the options that give
memory back to a small machine. Each was measured at QEMU's default 128 MiB (Debian 12's
signed 6.1; docs/memory.md); a kernel that does not know one ignores it.

- `initcall_blacklist=tracer_init_tracefs,init_zswap`: 6.1 builds tracefs's whole tree
  at boot, a dentry and an inode for every file of every trace event (about 9,700),
  8.5 MiB of slab that stays pinned, though MemAvailable counts most of it as
  reclaimable. Nothing on the CD traces; the trace events themselves stay registered,
  only their files are not made. And zswap makes its compressor pool at boot even when
  it is off (as here: the CD has no swap), with the compressor's scratch buffers:
  0.27 MiB of vmalloc.
- `cgroup.memory=nokmem`: no cgroup accounting of kernel memory. With it, the percpu
  allocator's second chunk carries an owner pointer per 4 bytes of percpu memory: a
  4 MiB zeroed vmalloc. The CD makes no cgroup.
- `coherent_pool=4K`: the DMA layer keeps three pools (DMA, DMA32, any zone) for
  coherent buffers asked for where the caller may not sleep, 128 KiB each at this size;
  x86 takes from them only for memory it must share decrypted with a device (an SEV
  guest), and there they grow on demand. 0.37 MiB.
- `sysctl.vm.watermark_boost_factor=0`: no watermark boost after a fragmenting
  allocation. Without it, a boost raised during boot (seen: 2 MiB) stays until kswapd
  runs, which on an idle machine is never, and MemAvailable, from which the fleet plans
  its jobs' memory, counts up to twice the boost less. It serves huge pages, which the
  kernel here does not use.
"""

from __future__ import annotations

MEMORY_OPTIONS = (
    "initcall_blacklist=tracer_init_tracefs,init_zswap",
    "cgroup.memory=nokmem",
    "coherent_pool=4K",
    "sysctl.vm.watermark_boost_factor=0",
)


def kernel_cmdline(profile_cmdline: str) -> str:
    """The profile's command line, then MEMORY_OPTIONS not already in it."""
    words = profile_cmdline.split()
    return " ".join([*words, *(o for o in MEMORY_OPTIONS if o not in words)])
