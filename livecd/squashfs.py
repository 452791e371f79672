"""The live system's root filesystem as a compressed read-only image (squashfs).

An initramfs is unpacked whole into RAM that the kernel can never reclaim: the 34 MB
root filesystem left a 128 MiB machine too little to unpack it, and the live system's
own memory far above its budget. A squashfs image stays compressed in RAM (a third of
the size), and what is read from it lands in the page cache, which the kernel reclaims
when a job needs the memory. `/init` of the small first-stage initramfs mounts it
(`livecd.stage1`).

mksquashfs (squashfs-tools) writes it from a staging tree: owners root, every time
SOURCE_DATE_EPOCH, files in sorted order, so the bytes depend on the content alone.
Images are cached by the hash of what went in, as compressed initramfs are.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path

from diskformats.cpio import Entry, complete_tree
from livecd.errors import BuildError
from livecd.files import atomic_write
from livecd.read_order import import_order, priorities
from livecd.run import need, run

# zstd -19: xz with the x86 BCJ filter makes a smaller image (9.0 MiB against 10.1,
# held in RAM for good) but decompresses about ten times slower: under emulation (TCG)
# the first accepted result came about 5 s later (16 s against 11), likely because
# Python's start reads its .pyc files out of order from fragment blocks, of which the
# kernel caches three.
# 128 KiB blocks: squashfs decompresses a whole block for any page of it, and keeps
# three fragment blocks in unreclaimable memory, and a block per possible CPU.
# Measured on this image (9,146,368 bytes with these options): 256 KiB blocks 8,916,992,
# 512 KiB 8,724,480, 1 MiB 8,568,832; xz + BCJ 8,105,984 at 128 KiB, 7,577,600 at 1 MiB.
# At 1 MiB the live system took 59.7 MiB at 128 MiB with zstd and 59.0 with xz, against
# 56.0 (scripts/bench_boot.py --memory: the kernel's larger caches cost more than the
# smaller image saves); first result under TCG, two runs each, alternated: 128 KiB zstd
# 11.96 / 13.64 s, 1 MiB zstd 12.60 / 14.75, 1 MiB xz 21.90 / 15.47 (load about 7).
# Measured again with the boot's files in read order (image 9,084,928 bytes): xz + BCJ
# 8,048,640 bytes at 128 KiB, 7,520,256 at 1 MiB, but the first job still finishes far
# later under `bench_boot.py --icount` (guest uptime at the first job-finished line, one
# boot each): zstd 128 KiB 14.49 s, xz 128 KiB 23.50, 256 KiB 24.38, 1 MiB 29.78: the
# order was not the cause, decoding xz is (the boot reads most of the image).
COMPRESSION = ("-comp", "zstd", "-Xcompression-level", "19")
BLOCK_SIZE = 128 * 1024
# Part of the cache key: a change of options or format builds every image again.
_FORMAT = f"squashfs-4 {' '.join(COMPRESSION)} -b {BLOCK_SIZE} stage-tree-3 owners"


def image(entries: Iterable[Entry], epoch: int, cache: Path) -> bytes:
    """The squashfs image of `entries` (regular files, directories, symlinks; device
    nodes are left out: the live system mounts devtmpfs on /dev)."""
    members = [
        e for e in complete_tree(entries) if not (stat.S_ISCHR(e.mode) or stat.S_ISBLK(e.mode))
    ]
    # The files the boot reads, packed in the order it reads them (livecd.read_order).
    order = "".join(
        f"{path} {priority}\n"
        for path, priority in priorities((e.path for e in members), import_order())
    )
    key = _key(members, epoch, order)
    cached = cache / "squashfs" / f"{key}.sqfs"
    if cached.exists():
        return cached.read_bytes()
    mksquashfs = need("mksquashfs", "squashfs-tools")
    with tempfile.TemporaryDirectory(prefix="livecd-squashfs-") as tmp:
        tree = Path(tmp) / "root"
        stage(members, tree)
        out = Path(tmp) / "root.sqfs"
        # Owners and modes come from the entries, not from the staging tree: a builder that
        # is not root can neither chown nor set another group's set-id bits, and the jail's
        # loader is setuid root for the sellers' group (`livecd.guest`). One pseudo
        # definition per member says exactly what the image holds.
        sort = Path(tmp) / "order"
        sort.write_text(order)
        pseudo = Path(tmp) / "owners"
        pseudo.write_text(
            "".join(f"{e.path} m {stat.S_IMODE(e.mode):o} {e.uid} {e.gid}\n" for e in members)
        )
        run(
            [
                mksquashfs, tree, out, "-noappend", "-no-xattrs", "-quiet", "-no-progress",
                "-b", str(BLOCK_SIZE), *COMPRESSION, "-pf", pseudo, "-sort", sort,
                "-root-uid", "0", "-root-gid", "0", "-root-mode", "755",
                "-mkfs-time", str(epoch), "-all-time", str(epoch),
            ],
            # mksquashfs refuses SOURCE_DATE_EPOCH beside the options that say the same.
            env={k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"},
            what="mksquashfs",
        )  # fmt: skip
        data = out.read_bytes()
    cached.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(cached, data)
    return data


def stage(entries: Iterable[Entry], tree: Path) -> None:
    """Write `entries` below `tree` with their exact modes (the umask does not apply).
    Parents an entry list leaves implicit are directories 0755, as in the cpio."""
    tree.mkdir()
    os.chmod(tree, 0o755)  # the image's root folder: / of the live system
    dirs: list[tuple[Path, int]] = []
    for e in entries:
        path = tree / e.path
        _parents(tree, path.parent)
        kind = stat.S_IFMT(e.mode)
        if kind == stat.S_IFDIR:
            path.mkdir(exist_ok=True)
            dirs.append((path, stat.S_IMODE(e.mode)))
        elif kind == stat.S_IFLNK:
            path.symlink_to(os.fsdecode(e.data))
        elif kind == stat.S_IFREG:
            if e.source is not None:
                shutil.copyfile(e.source, path)
            else:
                path.write_bytes(e.data)
            # Set-id bits are the pseudo definitions' (mksquashfs sets them with the owner).
            os.chmod(path, stat.S_IMODE(e.mode) & ~(stat.S_ISUID | stat.S_ISGID))
        else:
            raise BuildError(f"{e.path}: mode {e.mode:#o} cannot go into the squashfs image")
    # Directory modes last: a read-only directory would refuse its own children.
    for path, mode in dirs:
        os.chmod(path, mode)


def _parents(tree: Path, directory: Path) -> None:
    """Make the missing folders down to `directory`, each 0755 whatever the umask."""
    if directory == tree or directory.exists():
        return
    _parents(tree, directory.parent)
    directory.mkdir()
    os.chmod(directory, 0o755)


def _key(entries: list[Entry], epoch: int, order: str) -> str:
    h = hashlib.sha256(f"{_FORMAT}\0{epoch}\0{order}\0".encode())
    for e in entries:
        h.update(f"{e.path}\0{e.mode:o}\0{e.uid}\0{e.gid}\0".encode())
        h.update(hashlib.sha256(e.source.read_bytes() if e.source else e.data).digest())
    return h.hexdigest()
