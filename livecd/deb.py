"""Unpacking .deb files in Python: ar + tarfile, no maintainer script, nothing outside.

Each package is unpacked once into the cache (keyed by its sha256) and reused by later
builds. A member or hard link whose path leaves the tree, or that would be written through
a symbolic link, is refused: a hostile package cannot write outside the staging tree.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import BinaryIO

from livecd.errors import BuildError

_AR_MAGIC = b"!<arch>\n"


def _ar_member(f: BinaryIO, prefix: str, deb: Path) -> str:
    """Seek to the first ar member whose name starts with `prefix`; its name."""
    if f.read(8) != _AR_MAGIC:
        raise BuildError(f"{deb}: not a Debian package (no ar header)")
    while header := f.read(60):
        if len(header) < 60:
            break
        name = header[:16].decode("ascii", "replace").strip().rstrip("/")
        size = int(header[48:58].decode("ascii").strip() or 0)
        if name.startswith(prefix):
            return name
        f.seek(size + (size & 1), os.SEEK_CUR)
    raise BuildError(f"{deb}: no {prefix}* member; the package is damaged")


def safe_member_path(name: str) -> str:
    """The normalised relative path of a tar member, or BuildError if it leaves the tree."""
    path = posixpath.normpath(name)
    if name.startswith("/") or path == ".." or path.startswith("../"):
        raise BuildError(f"member {name!r} points outside the staging tree; refused")
    return "" if path == "." else path


def _check_no_symlink_parent(root: Path, rel: str, name: str) -> None:
    parts = rel.split("/")[:-1]
    for i in range(1, len(parts) + 1):
        if (root / "/".join(parts[:i])).is_symlink():
            raise BuildError(f"member {name!r} would be written through a symlink; refused")


def extract_data(deb: Path, dest: Path) -> None:
    """Extract the data archive of `deb` into `dest`, refusing anything that escapes."""
    with deb.open("rb") as f:
        name = _ar_member(f, "data.tar", deb)
        if name.endswith(".zst"):
            raise BuildError(f"{deb}: zstd-compressed packages are not supported")
        with tarfile.open(fileobj=f, mode="r|*") as tar:
            for member in tar:
                _extract_member(tar, member, dest, deb)


def _extract_member(tar: tarfile.TarFile, m: tarfile.TarInfo, dest: Path, deb: Path) -> None:
    try:
        rel = safe_member_path(m.name)
        if not rel:
            return
        _check_no_symlink_parent(dest, rel, m.name)
    except BuildError as exc:
        raise BuildError(f"{deb.name}: {exc}") from None
    target = dest / rel
    if m.isdir():
        target.mkdir(parents=True, exist_ok=True)
        target.chmod(0o755)
    elif m.isreg():
        target.parent.mkdir(parents=True, exist_ok=True)
        src = tar.extractfile(m)
        assert src is not None
        with target.open("wb") as out:
            shutil.copyfileobj(src, out)
        target.chmod(m.mode & 0o755 | 0o644)
    elif m.issym():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
        target.symlink_to(m.linkname)
    elif m.islnk():
        link = safe_member_path(m.linkname)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(dest / link, target)
    # Device nodes and fifos in a package are not needed in the image and need root.


def unpacked(deb: Path, cache: Path) -> Path:
    """The directory holding the unpacked data of `deb` (unpacked once, then reused)."""
    tree = cache / "unpacked" / deb.stem
    if tree.is_dir():
        return tree
    tree.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=tree.parent) as tmp:
        staging = Path(tmp) / "tree"
        staging.mkdir()
        extract_data(deb, staging)
        try:
            staging.rename(tree)
        except OSError:
            # Another build unpacked the same package meanwhile: the same bytes, keep it.
            if not tree.is_dir():
                raise
    return tree
