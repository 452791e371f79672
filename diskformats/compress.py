"""Deterministic compression of an initramfs in the formats the Linux kernel unpacks."""

from __future__ import annotations

import gzip
import lzma
from typing import Literal, get_args

from diskformats.errors import InternalError
from diskformats.run import need, pipe


class CompressionError(InternalError, ValueError):
    """A compression method or level the kernel cannot unpack. A bug of the caller unless it
    turns this into a UserError naming the user's input that caused it."""


Method = Literal["gzip", "xz", "zstd", "lz4", "none"]
METHODS: tuple[Method, ...] = get_args(Method)

# Default and allowed levels per method; "none" takes no level.
DEFAULT_LEVELS: dict[Method, int] = {"gzip": 9, "xz": 6, "zstd": 19, "lz4": 12}
LEVEL_RANGES: dict[Method, range] = {
    "gzip": range(0, 10),
    "xz": range(0, 10),
    "zstd": range(1, 23),
    "lz4": range(1, 13),
}
_ZSTD_ULTRA_FROM = 20
_ZSTD_WINDOW_LOG = 21
_XZ_MIN_DICT = 4096
# liblzma's dictionary size for presets 0..9 (xz(1), "Presets").
_XZ_PRESET_DICT = tuple(
    k << 10 for k in (256, 1024, 2048, 4096, 4096, 8192, 8192, 16384, 32768, 65536)
)


def compress(data: bytes, method: Method, level: int | None = None) -> bytes:
    """`data` compressed with `method`, byte for byte the same on every run."""
    if method not in METHODS:
        raise CompressionError(
            f"unknown compression {method!r}: choose one of {', '.join(METHODS)}"
        )
    if method == "none":
        if level is not None:
            raise CompressionError("compression 'none' takes no level")
        return data
    level = DEFAULT_LEVELS[method] if level is None else level
    allowed = LEVEL_RANGES[method]
    if level not in allowed:
        raise CompressionError(
            f"{method} level {level} is out of range: use {allowed.start}..{allowed.stop - 1}"
        )
    if method == "gzip":
        return _gzip(data, level)
    if method == "xz":
        return _xz(data, level)
    if method == "zstd":
        return _zstd(data, level)
    return _lz4(data, level)


def _gzip(data: bytes, level: int) -> bytes:
    # mtime 0 and no file name in the header: nothing of the host leaks in.
    return gzip.compress(data, compresslevel=level, mtime=0)


def _xz(data: bytes, level: int) -> bytes:
    # The kernel's xz decoder verifies only CRC32 (or no check), and knows the x86 BCJ
    # filter. A dictionary larger than the input gains nothing and the kernel allocates
    # all of it while unpacking, so it is capped at the input size.
    dict_size = min(_XZ_PRESET_DICT[level], max(len(data), _XZ_MIN_DICT))
    return lzma.compress(
        data,
        format=lzma.FORMAT_XZ,
        check=lzma.CHECK_CRC32,
        filters=[
            {"id": lzma.FILTER_X86},
            {"id": lzma.FILTER_LZMA2, "preset": level, "dict_size": dict_size},
        ],
    )


def _zstd(data: bytes, level: int) -> bytes:
    # One frame, content checksum on (the kernel's decoder verifies it); the stream size
    # lets zstd pick its parameters as for a file instead of an open-ended stream.
    # The window is capped at 2 MiB: with the 8 MiB of levels 17 and up, the kernel's
    # decoder takes its slow path and unpacking the live system under emulation took 4 s
    # instead of 0.3 s; the cap costs 6% in size at level 19.
    argv = [
        need("zstd", "zstd"),
        "-q",
        "-c",
        f"-{level}",
        f"--stream-size={len(data)}",
        f"--zstd=wlog={_ZSTD_WINDOW_LOG}",
    ]
    if level >= _ZSTD_ULTRA_FROM:
        argv.insert(1, "--ultra")
    return pipe(argv, data, "zstd")


def _lz4(data: bytes, level: int) -> bytes:
    # The kernel's initramfs lz4 decoder reads only the legacy format (-l).
    return pipe([need("lz4", "lz4"), "-q", "-c", "-l", f"-{level}"], data, "lz4")
