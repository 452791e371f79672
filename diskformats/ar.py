"""Deterministic `ar` archives in the common format `.deb` files use.

Members are written in the order given (a `.deb` wants `debian-binary`, then the control
and data archives), owned by root with mode 0644 and one timestamp, so the same members
give the same bytes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import BinaryIO

MAGIC = b"!<arch>\n"
_NAME_FIELD = 16


def write_ar(members: Iterable[tuple[str, bytes]], out: BinaryIO, *, mtime: int) -> None:
    """`members` as (name, data) pairs; names up to 15 characters, as dpkg writes them."""
    out.write(MAGIC)
    for name, data in members:
        field = f"{name}/".encode()
        if len(field) > _NAME_FIELD or "/" in name:
            raise ValueError(f"ar member name {name!r} does not fit the common format")
        header = b"%-16s%-12d%-6d%-6d%-8s%-10d`\n" % (field, mtime, 0, 0, b"100644", len(data))
        out.write(header)
        out.write(data)
        if len(data) % 2:
            out.write(b"\n")
