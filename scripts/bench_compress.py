#!/usr/bin/env python3
"""Initramfs compression figures: size, compress time and CLI decompress time per method."""

from __future__ import annotations

import argparse
import io
import stat
import subprocess
import tempfile
import time
from pathlib import Path

from diskformats.compress import DEFAULT_LEVELS, METHODS, Method, compress
from diskformats.cpio import Entry, tree_entries, write_newc

SAMPLE_LIBS = Path("/usr/lib/x86_64-linux-gnu")
SAMPLE_BYTES = 30 << 20
DECOMPRESS: dict[Method, list[str]] = {
    "gzip": ["gzip", "-dc"],
    "xz": ["xz", "-dc"],
    "zstd": ["zstd", "-dcq"],
    "lz4": ["lz4", "-dcq"],
    "none": ["cat"],
}


def sample_entries() -> list[Entry]:
    """Shared libraries, like most of an initramfs's bytes, up to SAMPLE_BYTES."""
    entries, total = [], 0
    for path in sorted(SAMPLE_LIBS.glob("*.so*")):
        if path.is_symlink() or not path.is_file():
            continue
        size = path.stat().st_size
        if total + size > SAMPLE_BYTES:
            continue
        entries.append(Entry(f"usr/lib/{path.name}", stat.S_IFREG | 0o644, source=path))
        total += size
    return entries


def archive(entries: list[Entry]) -> bytes:
    out = io.BytesIO()
    write_newc(entries, out, mtime=0)
    return out.getvalue()


def measure(data: bytes, method: Method, level: int | None, scratch: Path) -> str:
    start = time.perf_counter()
    packed = compress(data, method, level)
    packed_s = time.perf_counter() - start
    path = scratch / f"initrd.{method}"
    path.write_bytes(packed)
    start = time.perf_counter()
    with path.open("rb") as f:
        subprocess.run(DECOMPRESS[method], stdin=f, stdout=subprocess.DEVNULL, check=True)
    unpacked_s = time.perf_counter() - start
    name = method if level is None else f"{method} -{level}"
    ratio = len(packed) / len(data)
    return f"{name:<10} {len(packed) / 1e6:9.2f} {ratio:6.1%} {packed_s:10.2f} {unpacked_s:12.3f}"


def parse_extra(spec: str) -> tuple[Method, int]:
    method, _, level = spec.partition(":")
    if method not in METHODS or not level.isdigit():
        raise argparse.ArgumentTypeError(f"{spec!r}: expected METHOD:LEVEL, e.g. zstd:22")
    return method, int(level)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("tree", nargs="?", type=Path, help="directory to archive (default: libs)")
    parser.add_argument(
        "--also", nargs="*", type=parse_extra, default=[], help="extra METHOD:LEVEL rows"
    )
    args = parser.parse_args()
    entries = tree_entries(args.tree) if args.tree else sample_entries()
    start = time.perf_counter()
    data = archive(entries)
    cpio_s = time.perf_counter() - start
    print(f"cpio: {len(entries)} entries, {len(data) / 1e6:.2f} MB, written in {cpio_s:.2f} s")
    print(f"{'method':<10} {'size MB':>9} {'ratio':>6} {'compress s':>10} {'decompress s':>12}")
    rows: list[tuple[Method, int | None]] = [(m, DEFAULT_LEVELS.get(m)) for m in METHODS]
    with tempfile.TemporaryDirectory() as scratch:
        for method, level in [*rows, *args.also]:
            print(measure(data, method, level, Path(scratch)), flush=True)


if __name__ == "__main__":
    main()
