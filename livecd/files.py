"""Files on the build host: the cache root, whole-file writes, content hashes."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


def cache_home() -> Path:
    """`$XDG_CACHE_HOME/livecd`, by default `~/.cache/livecd`: every cache of the builder."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "livecd"


@contextlib.contextmanager
def atomic_file(path: Path, mode: int = 0o644) -> Iterator[tuple[BinaryIO, Path]]:
    """A temporary file beside `path`, renamed onto it when the block ends without an
    exception and removed when it raises: readers see the old file or the whole new one."""
    path = path.absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(name)
    try:
        with os.fdopen(fd, "w+b") as f:  # w+: a caller may read back what it wrote
            yield f, tmp
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write `data` to `path` through a temporary file and a rename: never half-written."""
    with atomic_file(path, mode) as (f, _):
        f.write(data)


def sha256_file(path: Path) -> str:
    """The hex sha256 of the file at `path`, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
