"""The control stream the loader reads on fd 3 (mirror of `struct control` in loader.c)."""

from __future__ import annotations

import struct

from cpushare.jail.elf import JobImage
from cpushare.jail.model import Limits

CONTROL_MAGIC = int.from_bytes(b"CPUSJAIL", "little")
CONTROL_VERSION = 1

_CONTROL = struct.Struct("<QQQQQQQQqQQQQ")
_SEGMENT = struct.Struct("<QQQQQ")


def encode_control(image: JobImage, limits: Limits, *, uid: int, gid: int, parent: int) -> bytes:
    """Header, then each segment's header and bytes: everything the loader needs."""
    parts = [
        _CONTROL.pack(
            CONTROL_MAGIC,
            CONTROL_VERSION,
            image.entry,
            image.stack_base,
            image.stack_size,
            image.arena_base,
            image.arena_size,
            limits.cpu_seconds,
            limits.nice,
            uid,
            gid,
            parent,
            len(image.segments),
        )
    ]
    for segment in image.segments:
        parts.append(
            _SEGMENT.pack(
                segment.map_start,
                segment.map_size,
                segment.data_start,
                len(segment.data),
                segment.prot,
            )
        )
        parts.append(segment.data)
    return b"".join(parts)
