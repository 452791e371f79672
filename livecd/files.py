"""Files on the build host: the cache root, whole-file writes, content hashes (the last two
declared with the byte formats, `diskformats.files`, which write ISOs through them)."""

from __future__ import annotations

import os
from pathlib import Path

from diskformats.files import atomic_file, sha256_file

__all__ = ["atomic_file", "atomic_write", "cache_home", "sha256_file"]


def cache_home() -> Path:
    """`$XDG_CACHE_HOME/livecd`, by default `~/.cache/livecd`: every cache of the builder."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "livecd"


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write `data` to `path` through a temporary file and a rename: never half-written."""
    with atomic_file(path, mode) as (f, _):
        f.write(data)
