"""The first-stage initramfs: busybox, the few signed modules that mount the live
system's squashfs image, `/init` and the image itself.

Its `/init` (templates/initramfs/init.j2) checks that the image arrived whole and that
the machine has the memory the live system needs, mounts the image, makes the live
system's root a tmpfs with the image's program folders bound into it read-only and its
few other files copied (writable, and still all in RAM: the CD can be ejected) and
switches to it. When
it cannot, it says so in one `cpushare: event=error what=memory` line and keeps a
minimal system up whose power button works.
"""

from __future__ import annotations

import io
import stat
from collections.abc import Iterable, Sequence

from diskformats.cpio import Entry, write_newc
from livecd import rootfs
from livecd.errors import BuildError
from livecd.kernel import Kernel, ModuleTree
from livecd.templates import Rendered

IMAGE = "live/root.squashfs"
# The one busybox of the ISO: the first stage's, which /init hands to the live system.
BUSYBOX = "bin/busybox"
# loop and squashfs mount the image; button and evdev let acpid see the power button
# when the boot stops here. No overlay module: a module costs its signature check above
# all, about 0.5 ms a KB under TCG, and overlay.ko is 355 KB (see `root_layout`).
MODULES = ("loop", "squashfs", "button", "evdev")
# The image's top folders that /init binds into the live system's root read-only: the
# programs, libraries, modules and Python, all but a few KB of the image. The others
# (/etc, busybox's links in /bin and /sbin, empty folders) are copied into the root's
# tmpfs, writable. A tmpfs overlay over the whole image did the same for writes, at the
# cost of loading overlay.ko (first accepted result, `scripts/bench_boot.py --icount`:
# see the commit's figures).
READ_ONLY = ("lib", "usr")
# What /init and the stopped system run: everything else of busybox stays in the image.
APPLETS = (
    "sh", "mount", "umount", "mkdir", "cat", "cp", "cut", "sed", "echo", "modprobe", "losetup",
    "switch_root", "stat", "grep", "init", "acpid", "getty", "poweroff", "sleep", "uname",
    "dmesg", "rm",
)  # fmt: skip
# Rendered files of the live system that the first stage needs too.
SHARED = ("lib/cpushare/say.sh",)
# MemAvailable below which /init stops. Measured under SeaBIOS (the first stage's figure,
# then the fleet's plan, then the guest uptime at the first accepted result of a sale of
# 1 MiB Floyd-Steinberg jobs, the order in the CD's slot): 128 MiB finds 56, then 37-44;
# 96 MiB 25, then 13, first result at 7.5-8.6 s (120-136 major faults in the sale);
# 92 MiB 21, then 9, 8.0-8.3 s; 90 MiB 19, then 7-8, and the page cache the live system
# runs from thrashes: first results at 13-16 s (4,500 major faults), and one sale in four
# had none in 300 s (71,600), so it is told so here. Below 90 MiB the kernel cannot
# unpack the initramfs and panics before this stage runs (qemu.machine.SMALLEST_MEMORY_MB).
MIN_AVAILABLE_MB = 21


def entries(
    busybox: Sequence[Entry],
    kernel: Kernel,
    modules: ModuleTree,
    rendered_stage1: Iterable[Rendered],
    rendered_rootfs: Iterable[Rendered],
    power_button: Iterable[Entry],
) -> list[Entry]:
    """Every member of the first-stage archive but the image (`image_archive`)."""
    binary = [e for e in busybox if e.path == BUSYBOX]
    links = [e for e in busybox if e.path.rsplit("/", 1)[-1] in APPLETS and e.path != BUSYBOX]
    shared = [f for f in rendered_rootfs if f.path in SHARED]
    return rootfs.merge(
        rootfs.skeleton(),
        binary,
        links,
        rootfs.modules(kernel, modules.closure(MODULES)),
        rootfs.rendered(shared),
        rootfs.rendered(rendered_stage1),
        power_button,
    )


def root_layout(image: Iterable[Entry]) -> tuple[list[str], list[str]]:
    """The image's top entries as /init lays out the live system's root: the folders
    bound read-only (READ_ONLY, those the image has) and the entries copied, by name."""
    folder: dict[str, bool] = {}  # top name: whether it is a folder
    for e in image:
        name, below, _ = e.path.partition("/")
        if name:
            folder[name] = folder.get(name, False) or bool(below) or stat.S_ISDIR(e.mode)
    for name in READ_ONLY:
        if name in folder and not folder[name]:
            raise BuildError(f"/{name} of the image is not a folder: it cannot be bound read-only")
    bound = [name for name in READ_ONLY if name in folder]
    return bound, sorted(name for name in folder if name not in READ_ONLY)


def busybox_links(busybox: Sequence[Entry]) -> list[Entry]:
    """busybox's applet links without its binary, for the image: the first stage's
    /bin/busybox is the live system's too. /init copies it into the root's /bin
    (templates/initramfs/init.j2), so the ISO carries it once (about 0.95 MB less in
    the compressed image)."""
    return [e for e in busybox if e.path != BUSYBOX]


def initramfs(first_stage: bytes, image: bytes, epoch: int) -> bytes:
    """The compressed first-stage archive, then the image in an uncompressed one: the
    kernel unpacks a concatenation of both kinds, and compressing a squashfs image a
    second time would only cost boot time. The image comes last so that, when memory
    runs out while unpacking, it is what is cut short and /init is there to say so."""
    buf = io.BytesIO()
    write_newc([Entry(IMAGE, stat.S_IFREG | 0o444, data=image)], buf, mtime=epoch)
    # The kernel looks for the next archive's header on a 4-byte boundary.
    return first_stage + b"\0" * (-len(first_stage) % 512) + buf.getvalue()


def split(initramfs: bytes) -> tuple[bytes, bytes]:
    """`initramfs` (as `initramfs` made it) cut into its compressed first-stage archive,
    zero padding included, and the uncompressed archive that holds the image."""
    # The archive's first member is the image's folder, which write_newc adds.
    name = IMAGE.split("/")[0].encode() + b"\0"
    for offset in range(0, len(initramfs), 512):
        header = initramfs[offset : offset + 110 + len(name)]
        if header.startswith(b"070701") and header.endswith(name):
            return initramfs[:offset], initramfs[offset:]
    raise ValueError(f"no uncompressed archive holding {IMAGE} in this initramfs")
