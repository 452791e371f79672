"""Mending the GPT that pycdlib's isohybrid writes.

pycdlib (1.22) checksums only the partition entries it fills although its header declares
128, and gives the backup header a disk GUID of its own: a tool or firmware that checks
the GPT would call it corrupt. `mend_gpt` rewrites both copies consistently in place: one
disk GUID and every CRC recomputed over what the headers declare. The partition types
stay "Basic data", as pycdlib (and so `livecd inspect`) refuses to open anything else;
firmware finds the ESP through the hybrid MBR's EFI System partition (0xEF).
"""

from __future__ import annotations

import struct
import uuid
import zlib
from typing import BinaryIO

SECTOR = 512
_HEADER = struct.Struct("<8sIII4xQQQQ16sQIII")


def mend_gpt(fp: BinaryIO, *, disk_guid: uuid.UUID) -> None:
    """Make the primary and backup GPT of the image in `fp` agree and check out."""
    primary = _read_header(fp, 1)
    if primary is None:
        return
    fp.seek(primary["entries_lba"] * SECTOR)
    entries = fp.read(primary["count"] * primary["entry_size"])
    entries_crc = zlib.crc32(entries)
    for lba in (1, primary["backup_lba"]):
        header = _read_header(fp, lba)
        if header is None:
            continue
        fp.seek(header["entries_lba"] * SECTOR)
        fp.write(entries)
        _write_header(fp, lba, header, disk_guid, entries_crc)


def _read_header(fp: BinaryIO, lba: int) -> dict[str, int] | None:
    fp.seek(lba * SECTOR)
    raw = fp.read(_HEADER.size)
    if len(raw) < _HEADER.size or raw[:8] != b"EFI PART":
        return None
    (_, _, header_size, _, current, backup, _, _, _, entries_lba, count, entry_size, _) = (
        _HEADER.unpack(raw)
    )
    return {
        "header_size": header_size,
        "current": current,
        "backup_lba": backup,
        "entries_lba": entries_lba,
        "count": count,
        "entry_size": entry_size,
    }


def _write_header(
    fp: BinaryIO, lba: int, header: dict[str, int], disk_guid: uuid.UUID, entries_crc: int
) -> None:
    fp.seek(lba * SECTOR)
    raw = bytearray(fp.read(header["header_size"]))
    raw[56:72] = disk_guid.bytes_le
    struct.pack_into("<I", raw, 88, entries_crc)
    struct.pack_into("<I", raw, 16, 0)
    struct.pack_into("<I", raw, 16, zlib.crc32(raw))
    fp.seek(lba * SECTOR)
    fp.write(raw)
