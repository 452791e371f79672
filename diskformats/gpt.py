"""The GPT header, parsed in one place, and mending the GPT that pycdlib's isohybrid writes.

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
from dataclasses import dataclass
from typing import BinaryIO

SECTOR = 512
# UEFI 2.10, 5.3.2: signature, revision, header size, header CRC32, reserved, my LBA,
# alternate LBA, first and last usable LBA, disk GUID, partition entry LBA, number of
# entries, size of an entry, entries CRC32.
_HEADER = struct.Struct("<8sIIIIQQQQ16sQIII")
_CRC_FIELD = slice(16, 20)
_DISK_GUID_FIELD = slice(56, 72)
_ENTRIES_CRC_OFFSET = 88
# More than a 1 MiB partition array is no GPT of ours, and reading it would cost memory.
_MAX_ENTRIES_BYTES = 1 << 20


@dataclass(frozen=True)
class GptHeader:
    """The fields of a GPT header that reading and mending need."""

    header_size: int
    crc_ok: bool
    my_lba: int
    backup_lba: int
    disk_guid: uuid.UUID
    entries_lba: int
    entry_count: int
    entry_size: int
    entries_crc: int

    @property
    def entries_bytes(self) -> int:
        return self.entry_count * self.entry_size


def parse_header(raw: bytes) -> GptHeader | None:
    """The GPT header at the start of `raw` (one sector), or None if there is none."""
    if raw[:8] != b"EFI PART" or len(raw) < _HEADER.size:
        return None
    (_, _, size, crc, _, mine, backup, _, _, guid, entries_lba, count, entry_size, entries_crc) = (
        _HEADER.unpack_from(raw)
    )
    if entry_size < 128 or count * entry_size > _MAX_ENTRIES_BYTES:
        return None
    crc_ok = _HEADER.size <= size <= len(raw) and crc == zlib.crc32(
        raw[: _CRC_FIELD.start] + bytes(4) + raw[_CRC_FIELD.stop : size]
    )
    return GptHeader(
        header_size=size,
        crc_ok=crc_ok,
        my_lba=mine,
        backup_lba=backup,
        disk_guid=uuid.UUID(bytes_le=guid),
        entries_lba=entries_lba,
        entry_count=count,
        entry_size=entry_size,
        entries_crc=entries_crc,
    )


def read_header(fp: BinaryIO, lba: int) -> GptHeader | None:
    """The GPT header in sector `lba` of the disk image `fp`, or None."""
    fp.seek(lba * SECTOR)
    return parse_header(fp.read(SECTOR))


def read_entries(fp: BinaryIO, header: GptHeader) -> bytes:
    """The partition array `header` declares."""
    fp.seek(header.entries_lba * SECTOR)
    return fp.read(header.entries_bytes)


def mend_gpt(fp: BinaryIO, *, disk_guid: uuid.UUID) -> None:
    """Make the primary and backup GPT of the image in `fp` agree and check out."""
    primary = read_header(fp, 1)
    if primary is None:
        return
    entries = read_entries(fp, primary)
    entries_crc = zlib.crc32(entries)
    for lba in (1, primary.backup_lba):
        header = read_header(fp, lba)
        if header is None:
            continue
        fp.seek(header.entries_lba * SECTOR)
        fp.write(entries)
        _write_header(fp, lba, header, disk_guid, entries_crc)


def _write_header(
    fp: BinaryIO, lba: int, header: GptHeader, disk_guid: uuid.UUID, entries_crc: int
) -> None:
    fp.seek(lba * SECTOR)
    raw = bytearray(fp.read(header.header_size))
    raw[_DISK_GUID_FIELD] = disk_guid.bytes_le
    struct.pack_into("<I", raw, _ENTRIES_CRC_OFFSET, entries_crc)
    raw[_CRC_FIELD] = bytes(4)
    struct.pack_into("<I", raw, _CRC_FIELD.start, zlib.crc32(raw))
    fp.seek(lba * SECTOR)
    fp.write(raw)
