"""The top folder of a FAT12/16/32 volume, read straight from its block device.

The CPUSHARE medium's orders are a few small files at the root of a FAT stick: read here,
no filesystem is mounted, so the kernel loads none of its modules (vfat, fat and two
code pages, each one's signature checked) on the way to the first sale. Only what the
live system needs: the root folder's entries (long names joined, deleted ones and the
volume label skipped) and a file's bytes up to a limit. A medium is anybody's: every
offset, cluster number and chain is checked against the volume's size, and a broken
one is a FatReadError saying what, never a read elsewhere or an endless loop.
"""

from __future__ import annotations

import os
import struct

from cpushare.record import record

_ATTR_LABEL = 0x08
_ATTR_DIR = 0x10
_ATTR_LFN = 0x0F
_NT_LOWER_BASE = 0x08
_NT_LOWER_EXT = 0x10
_SLOT = 32
# Cluster counts that tell FAT12 from FAT16 from FAT32 (Microsoft's FAT specification).
_FAT12_BELOW = 4085
_FAT16_BELOW = 65525


class FatReadError(ValueError):
    """A volume that is not FAT as this reader knows it, or that is broken: what is wrong."""


@record(frozen=True)
class FatEntry:
    name: str  # the long name, else the short one as vfat shows it
    is_dir: bool
    cluster: int
    size: int


@record(frozen=True)
class _Layout:
    bits: int  # 12, 16 or 32
    sector: int  # bytes
    cluster: int  # bytes
    fat_offset: int  # of the first FAT, in bytes
    root_offset: int  # FAT12/16: the fixed root folder, in bytes
    root_slots: int  # FAT12/16: its 32-byte entries
    root_cluster: int  # FAT32: the root folder's first cluster
    data_offset: int  # of cluster 2, in bytes
    clusters: int  # data clusters: numbers 2 .. clusters + 1


def _layout(boot: bytes) -> _Layout:
    if len(boot) < 512 or boot[510:512] != b"\x55\xaa":
        raise FatReadError("no boot sector signature")
    sector, per_cluster, reserved, fats, root_slots, total16 = struct.unpack_from(
        "<HBHBHH", boot, 11
    )
    fat16_size, total32, fat32_size, root_cluster = (
        struct.unpack_from("<H", boot, 22)[0],
        *struct.unpack_from("<I", boot, 32),
        *struct.unpack_from("<I", boot, 36),
        *struct.unpack_from("<I", boot, 44),
    )
    if sector not in (512, 1024, 2048, 4096):
        raise FatReadError(f"a sector of {sector} bytes")
    if per_cluster == 0 or per_cluster & (per_cluster - 1):
        raise FatReadError(f"{per_cluster} sectors per cluster")
    if reserved == 0 or fats == 0:
        raise FatReadError("no reserved sector or no FAT")
    fat_sectors = fat16_size or fat32_size
    # FAT32 may keep its FATs unmirrored, one of them active: that one is read.
    flags = struct.unpack_from("<H", boot, 40)[0] if not fat16_size else 0
    active = flags & 0x0F if flags & 0x80 else 0
    if active >= fats:
        raise FatReadError(f"its active FAT is number {active} of {fats}")
    total = total16 or total32
    root_sectors = (root_slots * _SLOT + sector - 1) // sector
    data_start = reserved + fats * fat_sectors + root_sectors
    if fat_sectors == 0 or total <= data_start:
        raise FatReadError("its sizes do not add up")
    clusters = (total - data_start) // per_cluster
    bits = 12 if clusters < _FAT12_BELOW else 16 if clusters < _FAT16_BELOW else 32
    if (bits == 32) != (root_slots == 0):
        raise FatReadError(f"FAT{bits} with {root_slots} root entries")
    # The FAT must hold an entry for every cluster.
    if fat_sectors * sector * 8 < (clusters + 2) * bits:
        raise FatReadError("its FAT is smaller than its clusters need")
    return _Layout(
        bits=bits,
        sector=sector,
        cluster=per_cluster * sector,
        fat_offset=(reserved + active * fat_sectors) * sector,
        root_offset=(reserved + fats * fat_sectors) * sector,
        root_slots=root_slots,
        root_cluster=root_cluster,
        data_offset=data_start * sector,
        clusters=clusters,
    )


def _short_name(slot: bytes) -> str:
    base, ext = slot[0:8].rstrip(b" "), slot[8:11].rstrip(b" ")
    if base[:1] == b"\x05":  # a first byte of 0xE5, escaped
        base = b"\xe5" + base[1:]
    flags = slot[12]
    # Code page 437 in truth: Latin-1 reads its ASCII the same (what an order's name
    # needs) with a codec the live system already has.
    text = base.decode("latin-1")
    if flags & _NT_LOWER_BASE:
        text = text.lower()
    if ext:
        extension = ext.decode("latin-1")
        text += "." + (extension.lower() if flags & _NT_LOWER_EXT else extension)
    return text


def _checksum(short: bytes) -> int:
    total = 0
    for byte in short:
        total = (((total & 1) << 7) + (total >> 1) + byte) & 0xFF
    return total


class _LongName:
    """The long name being gathered from the slots before a short entry."""

    def __init__(self) -> None:
        self.parts: dict[int, bytes] = {}
        self.count = 0
        self.checksum = -1

    def add(self, slot: bytes) -> None:
        order = slot[0] & 0x1F
        if slot[0] & 0x40:  # the last part comes first
            self.parts, self.count, self.checksum = {}, order, slot[13]
        if slot[13] != self.checksum or not 1 <= order <= self.count:
            self.parts, self.count = {}, 0
            return
        self.parts[order] = slot[1:11] + slot[14:26] + slot[28:32]

    def take(self, short: bytes) -> str | None:
        """The long name of the short entry `short`, if its parts are all there."""
        whole = len(self.parts) == self.count > 0 and self.checksum == _checksum(short)
        data = b"".join(self.parts[i] for i in range(1, self.count + 1)) if whole else b""
        self.parts, self.count = {}, 0
        if not whole:
            return None
        text = data.decode("utf-16-le", "replace")
        return text.split("\0", 1)[0] or None


class FatVolume:
    """A FAT volume on an open file or block device `fd` (not closed here)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self.layout = _layout(self._read(0, 512))
        self._fat_cache: dict[int, bytes] = {}

    def _read(self, offset: int, size: int) -> bytes:
        data = os.pread(self._fd, size, offset)
        if len(data) != size:
            raise FatReadError(f"the volume ends before byte {offset + size}")
        return data

    def _next(self, cluster: int) -> int | None:
        """The cluster after `cluster` in its chain, None at its end."""
        lay = self.layout
        byte = cluster * lay.bits // 8
        sector = byte // lay.sector
        if sector not in self._fat_cache:
            # Two sectors: a FAT12 entry may straddle a sector's end.
            start = lay.fat_offset + sector * lay.sector
            self._fat_cache[sector] = self._read(start, 2 * lay.sector)
        raw = self._fat_cache[sector]
        at = byte - sector * lay.sector
        if lay.bits == 12:
            pair = int.from_bytes(raw[at : at + 2], "little")
            value = pair >> 4 if cluster & 1 else pair & 0xFFF
            end = 0xFF8
        elif lay.bits == 16:
            value, end = int.from_bytes(raw[at : at + 2], "little"), 0xFFF8
        else:
            value, end = int.from_bytes(raw[at : at + 4], "little") & 0x0FFFFFFF, 0x0FFFFFF8
        if value >= end:
            return None
        self._check(value)
        return value

    def _check(self, cluster: int) -> None:
        if not 2 <= cluster < self.layout.clusters + 2:
            raise FatReadError(f"a chain runs to cluster {cluster}, outside the volume")

    def _chain(self, first: int, limit: int) -> bytes:
        """The bytes of the chain starting at `first`, at most `limit` clusters of it."""
        lay = self.layout
        out: list[bytes] = []
        cluster: int | None = first
        while cluster is not None and len(out) < limit:
            self._check(cluster)
            out.append(self._read(lay.data_offset + (cluster - 2) * lay.cluster, lay.cluster))
            cluster = self._next(cluster)
        return b"".join(out)

    def root(self, max_entries: int) -> list[FatEntry]:
        """The root folder's first `max_entries` files and folders (plus one, to tell
        that there were more), in the order they are stored."""
        lay = self.layout
        # Each entry takes at most 21 slots (20 for a 255-character long name).
        slots = max_entries * 21 + 21
        if lay.bits == 32:
            per_cluster = lay.cluster // _SLOT
            data = self._chain(lay.root_cluster, (slots + per_cluster - 1) // per_cluster)
        else:
            data = self._read(lay.root_offset, min(lay.root_slots, slots) * _SLOT)
        entries: list[FatEntry] = []
        long_name = _LongName()
        for at in range(0, len(data) - _SLOT + 1, _SLOT):
            slot = data[at : at + _SLOT]
            if slot[0] == 0 or len(entries) > max_entries:
                break
            if slot[0] == 0xE5:
                long_name = _LongName()
                continue
            attr = slot[11]
            if attr & 0x3F == _ATTR_LFN:
                long_name.add(slot)
                continue
            name = long_name.take(slot[0:11])
            if attr & _ATTR_LABEL or slot[0:11] in (b".          ", b"..         "):
                continue
            high = struct.unpack_from("<H", slot, 20)[0] if lay.bits == 32 else 0
            cluster = high << 16 | struct.unpack_from("<H", slot, 26)[0]
            entries.append(
                FatEntry(
                    name=name or _short_name(slot),
                    is_dir=bool(attr & _ATTR_DIR),
                    cluster=cluster,
                    size=struct.unpack_from("<I", slot, 28)[0],
                )
            )
        return entries

    def read(self, entry: FatEntry) -> bytes:
        """The bytes of a file entry (the caller bounds its size first)."""
        if entry.size == 0:
            return b""
        lay = self.layout
        data = self._chain(entry.cluster, (entry.size + lay.cluster - 1) // lay.cluster)
        if len(data) < entry.size:
            raise FatReadError(f"{entry.name}'s chain ends before its {entry.size} bytes")
        return data[: entry.size]
