"""Deterministic newc ("070701") cpio archives for the initramfs."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from diskformats.errors import InternalError


class CpioError(InternalError, ValueError):
    """An entry or time a newc archive cannot hold. A bug of the caller unless it
    turns this into a UserError naming the user's input that caused it."""


MAGIC = b"070701"
TRAILER = "TRAILER!!!"
_CHUNK = 1 << 20
_DIR_MODE = stat.S_IFDIR | 0o755
# Types the kernel's initramfs unpacker creates; anything else is a caller's mistake.
_KNOWN_TYPES = frozenset(
    {stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK, stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO}
)


@dataclass(frozen=True)
class Entry:
    """One archive member. Regular file content comes from `source` or inline `data`;
    a symlink's target is its `data`. Owned by root unless `uid`/`gid` say otherwise."""

    path: str
    mode: int
    source: Path | None = None
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)
    uid: int = 0
    gid: int = 0


def tree_entries(root: Path) -> list[Entry]:
    """Entries for every directory, regular file and symlink below `root`, with normalized
    modes (dirs 0755, files 0755 or 0644, links 0777). Any other file type is refused."""
    entries: list[Entry] = []
    for path in _walk(root):
        rel = path.relative_to(root).as_posix()
        st = path.lstat()
        if stat.S_ISDIR(st.st_mode):
            entries.append(Entry(rel, _DIR_MODE))
        elif stat.S_ISREG(st.st_mode):
            perm = 0o755 if st.st_mode & 0o111 else 0o644
            entries.append(Entry(rel, stat.S_IFREG | perm, source=path))
        elif stat.S_ISLNK(st.st_mode):
            target = os.fsencode(os.readlink(path))
            entries.append(Entry(rel, stat.S_IFLNK | 0o777, data=target))
        else:
            raise CpioError(
                f"{path}: not a directory, regular file or symlink; "
                "device nodes go into the archive as Entry objects, not files in the tree"
            )
    return sorted(entries, key=_sort_key)


def _walk(directory: Path) -> Iterator[Path]:
    with os.scandir(directory) as it:
        children = sorted(it, key=lambda e: e.name)
    for child in children:
        path = Path(child.path)
        yield path
        if child.is_dir(follow_symlinks=False):
            yield from _walk(path)


def write_newc(entries: Iterable[Entry], out: BinaryIO, *, mtime: int) -> int:
    """Write `entries` as one newc archive to `out`: sorted by path, missing parent
    directories added, owners root unless an entry names others, every time `mtime`,
    padded to 512 bytes. Returns the number of bytes written. Bad entries raise CpioError
    before any write."""
    if not 0 <= mtime <= 0xFFFFFFFF:
        raise CpioError(f"mtime {mtime} does not fit a cpio header (0..4294967295)")
    members = complete_tree(entries)
    written = 0
    for ino, entry in enumerate(members, start=1):
        written += _write_member(out, entry, ino, mtime)
    written += _write_header(out, TRAILER, ino=0, mode=0, nlink=1, mtime=0, size=0)
    pad = -written % 512
    out.write(b"\0" * pad)
    return written + pad


def complete_tree(entries: Iterable[Entry]) -> list[Entry]:
    """`entries` checked (each well formed, no path twice, no file where a folder must
    be), with their missing parent folders, sorted: what an archive of them holds."""
    by_path: dict[str, Entry] = {}
    for entry in entries:
        _check(entry)
        if entry.path in by_path:
            raise CpioError(f"{entry.path}: appears twice in the archive")
        by_path[entry.path] = entry
    for path in list(by_path):
        parts = path.split("/")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            existing = by_path.setdefault(parent, Entry(parent, _DIR_MODE))
            if not stat.S_ISDIR(existing.mode):
                raise CpioError(f"{parent}: is not a directory but {path} is inside it")
    return sorted(by_path.values(), key=_sort_key)


def _sort_key(entry: Entry) -> list[str]:
    # Component-wise, so a directory's whole subtree follows it directly.
    return entry.path.split("/")


def _check(entry: Entry) -> None:
    parts = entry.path.split("/")
    if entry.path.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise CpioError(
            f"{entry.path!r}: archive paths are relative, '/'-separated, "
            "without empty, '.' or '..' components"
        )
    kind = stat.S_IFMT(entry.mode)
    if kind not in _KNOWN_TYPES:
        raise CpioError(f"{entry.path}: mode {entry.mode:#o} has no known file type")
    if entry.source is not None and kind != stat.S_IFREG:
        raise CpioError(f"{entry.path}: only regular files take content from a source file")
    if entry.data and kind not in (stat.S_IFREG, stat.S_IFLNK):
        raise CpioError(f"{entry.path}: only regular files and symlinks carry data")
    if kind == stat.S_IFLNK and not entry.data:
        raise CpioError(f"{entry.path}: a symlink needs its target as data")
    if entry.source is not None and entry.data:
        raise CpioError(f"{entry.path}: give either a source file or inline data, not both")
    if entry.source is not None and not entry.source.is_file():
        raise CpioError(f"{entry.path}: source {entry.source} is not a readable regular file")


def _write_member(out: BinaryIO, entry: Entry, ino: int, mtime: int) -> int:
    kind = stat.S_IFMT(entry.mode)
    nlink = 2 if kind == stat.S_IFDIR else 1
    size = entry.source.stat().st_size if entry.source is not None else len(entry.data)
    if size > 0xFFFFFFFF:
        raise CpioError(f"{entry.path}: {size} bytes is more than a newc member can hold")
    written = _write_header(
        out,
        entry.path,
        ino=ino,
        mode=entry.mode,
        nlink=nlink,
        mtime=mtime,
        size=size,
        rdev=entry.rdev,
        owner=(entry.uid, entry.gid),
    )
    if entry.source is not None:
        copied = _copy_file(entry.source, out)
        if copied != size:
            raise CpioError(f"{entry.source}: changed size while being archived")
    else:
        out.write(entry.data)
    out.write(b"\0" * (-size % 4))
    return written + size + (-size % 4)


def _copy_file(source: Path, out: BinaryIO) -> int:
    copied = 0
    with source.open("rb") as f:
        while chunk := f.read(_CHUNK):
            out.write(chunk)
            copied += len(chunk)
    return copied


def _write_header(
    out: BinaryIO,
    name: str,
    *,
    ino: int,
    mode: int,
    nlink: int,
    mtime: int,
    size: int,
    rdev: tuple[int, int] = (0, 0),
    owner: tuple[int, int] = (0, 0),
) -> int:
    encoded = os.fsencode(name) + b"\0"
    uid, gid = owner
    fields = (ino, mode, uid, gid, nlink, mtime, size, 0, 0, rdev[0], rdev[1], len(encoded), 0)
    header = MAGIC + b"".join(b"%08X" % f for f in fields) + encoded
    header += b"\0" * (-len(header) % 4)
    out.write(header)
    return len(header)
