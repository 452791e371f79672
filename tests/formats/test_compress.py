"""Initramfs compression, checked by each format's own command-line decompressor."""

from __future__ import annotations

import random
import subprocess
import time
from pathlib import Path

import pytest

from diskformats.compress import METHODS, CompressionError, Method, compress
from livecd.errors import ToolMissing

DECOMPRESS: dict[Method, list[str]] = {
    "gzip": ["gzip", "-dc"],
    "xz": ["xz", "-dc"],
    "zstd": ["zstd", "-dcq"],
    "lz4": ["lz4", "-dcq"],
}
COMPRESSED: list[Method] = [m for m in METHODS if m != "none"]


@pytest.fixture(scope="module")
def sample() -> bytes:
    rng = random.Random(2)
    text = b"".join(b"cpushare: event=job-finished job=%d status=ok\n" % i for i in range(4000))
    return text + rng.randbytes(50_000) + bytes(100_000) + text[::-1]


def unpack(method: Method, data: bytes) -> bytes:
    return subprocess.run(DECOMPRESS[method], input=data, capture_output=True, check=True).stdout


@pytest.mark.parametrize("method", COMPRESSED)
def test_round_trip_through_the_cli_decompressor(method: Method, sample: bytes) -> None:
    packed = compress(sample, method)
    assert len(packed) < len(sample) // 2
    assert unpack(method, packed) == sample


@pytest.mark.parametrize("method", COMPRESSED)
def test_same_input_gives_the_same_bytes(
    method: Method, sample: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = compress(sample, method, 3)
    # A day later by the clock: a time stamp in the output would now differ.
    later = time.time() + 86400
    monkeypatch.setattr(time, "time", lambda: later)
    assert compress(sample, method, 3) == first


@pytest.mark.parametrize("method", COMPRESSED)
def test_explicit_level_round_trips(method: Method, sample: bytes) -> None:
    assert unpack(method, compress(sample, method, 1)) == sample


def test_none_returns_the_input(sample: bytes) -> None:
    assert compress(sample, "none") is sample


def test_gzip_header_has_no_time_and_no_name(sample: bytes) -> None:
    packed = compress(sample, "gzip")
    flags, mtime = packed[3], int.from_bytes(packed[4:8], "little")
    assert (flags, mtime) == (0, 0)


def xz_block(path: Path) -> list[str]:
    """The fields of the first block line of `xz --robot -lvv` (check, filter chain, ...)."""
    info = subprocess.run(
        ["xz", "--robot", "-lvv", str(path)], capture_output=True, check=True, text=True
    ).stdout
    return next(line.split("\t") for line in info.splitlines() if line.startswith("block\t"))


def test_xz_uses_crc32_and_the_x86_filter(sample: bytes, tmp_path: Path) -> None:
    path = tmp_path / "initrd.xz"
    path.write_bytes(compress(sample, "xz"))
    block = xz_block(path)
    assert block[9] == "CRC32"
    assert block[-1].startswith("--x86 --lzma2=")


def test_xz_dictionary_is_capped_at_the_input_size(tmp_path: Path) -> None:
    path = tmp_path / "small.xz"
    path.write_bytes(compress(b"x" * 100_000, "xz", 9))
    # LZMA2 stores the size rounded up to 2^n or 3 * 2^(n-1): 128 KiB here, not 64 MiB.
    assert xz_block(path)[-1] == "--x86 --lzma2=dict=128KiB"


def test_lz4_is_the_legacy_format_the_kernel_reads(sample: bytes) -> None:
    assert compress(sample, "lz4")[:4] == (0x184C2102).to_bytes(4, "little")


def test_zstd_frame_carries_a_checksum(sample: bytes, tmp_path: Path) -> None:
    path = tmp_path / "initrd.zst"
    path.write_bytes(compress(sample, "zstd"))
    info = subprocess.run(["zstd", "-lv", str(path)], capture_output=True, check=True, text=True)
    assert "Check: XXH64" in info.stdout


def test_zstd_ultra_levels_round_trip() -> None:
    data = b"initramfs " * 1000
    assert unpack("zstd", compress(data, "zstd", 22)) == data


@pytest.mark.parametrize(
    ("method", "level", "message"),
    [
        ("bzip2", None, "unknown compression 'bzip2'"),
        ("gzip", 10, "gzip level 10 is out of range: use 0..9"),
        ("zstd", 0, "zstd level 0 is out of range: use 1..22"),
        ("none", 1, "takes no level"),
    ],
)
def test_bad_method_or_level_is_refused(method: Method, level: int | None, message: str) -> None:
    with pytest.raises(CompressionError, match=message):
        compress(b"data", method, level)


def test_missing_cli_says_which_package_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ToolMissing, match="apt-get install zstd"):
        compress(b"data", "zstd")
