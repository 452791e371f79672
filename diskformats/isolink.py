"""Pointing an ISO's files at bytes already on the CD: the directory records of a file,
in the ISO 9660 tree and in the Joliet tree, patched after the ISO is written to the
extent and size of a file inside another one (the kernel, the initramfs and the order
slot inside the ESP's FAT image: one copy serves the FAT's readers and the ISO's).

A record holds its extent and its size twice, little- then big-endian; Rock Ridge's
entries hold neither. Records never cross a 2048-byte sector.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

CD_SECTOR = 2048
_ROOT_RECORD = 156  # in a volume descriptor
_JOLIET_ESCAPES = (b"%/@", b"%/C", b"%/E")


@dataclass(frozen=True)
class Link:
    """The file at `iso_path` (ISO 9660 identifiers, "/LIVE/VMLINUZ.;1") and `joliet_path`
    ("/live/vmlinuz") made to read `size` bytes from CD sector `lba`."""

    iso_path: str
    joliet_path: str
    lba: int
    size: int


def link_files(fp: BinaryIO, links: list[Link]) -> None:
    """Patch the records of every link in the ISO open in `fp` (read and write)."""
    roots = _roots(fp)
    for link in links:
        for joliet, root in roots:
            path = link.joliet_path if joliet else link.iso_path
            offset = _find(fp, root, path.strip("/").split("/"), joliet)
            if offset is None:
                raise ValueError(f"no directory record for {path} in the ISO")
            fp.seek(offset + 2)
            fp.write(_both(link.lba) + _both(link.size))


def _both(value: int) -> bytes:
    """A 32-bit field in both byte orders, as ISO 9660 records it."""
    return struct.pack("<I", value) + struct.pack(">I", value)


def _roots(fp: BinaryIO) -> list[tuple[bool, tuple[int, int]]]:
    """(Joliet?, the root directory's (extent, size)) of the primary and Joliet trees."""
    roots = []
    for sector in range(16, 64):
        fp.seek(sector * CD_SECTOR)
        vd = fp.read(CD_SECTOR)
        if vd[1:6] != b"CD001" or vd[0] == 255:
            break
        if vd[0] == 1 or (vd[0] == 2 and vd[88:91] in _JOLIET_ESCAPES):
            extent, size = _extent(vd, _ROOT_RECORD)
            roots.append((vd[0] == 2, (extent, size)))
    if not roots:
        raise ValueError("no ISO 9660 volume descriptor")
    return roots


def _extent(data: bytes, at: int) -> tuple[int, int]:
    extent, size = struct.unpack_from("<I4xI", data, at + 2)
    return extent, size


def _find(fp: BinaryIO, directory: tuple[int, int], parts: list[str], joliet: bool) -> int | None:
    """The byte offset in `fp` of the record named by `parts` under `directory`."""
    for offset, record in _records(fp, *directory):
        length = record[32]
        raw = record[33 : 33 + length]
        name = raw.decode("utf-16-be").removesuffix(";1") if joliet else raw.decode("ascii")
        if name != parts[0]:
            continue
        if len(parts) == 1:
            return offset
        return _find(fp, _extent(record, 0), parts[1:], joliet)
    return None


def _records(fp: BinaryIO, extent: int, size: int) -> Iterator[tuple[int, bytes]]:
    """(file offset, bytes) of each record of a directory, "." and ".." left out."""
    for sector in range(-(-size // CD_SECTOR)):
        base = (extent + sector) * CD_SECTOR
        fp.seek(base)
        data = fp.read(CD_SECTOR)
        at = 0
        while at < CD_SECTOR and data[at]:
            record = data[at : at + data[at]]
            if record[33:34] not in (b"\0", b"\1") or record[32] != 1:
                yield base + at, record
            at += data[at]
