"""Deterministic FAT12/FAT16 images in pure Python, for the UEFI system partition."""

from __future__ import annotations

import calendar
import re
import struct
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from diskformats.errors import InternalError


class FatError(InternalError, ValueError):
    """A name, label, serial or size a FAT image cannot hold. A bug of the caller unless it
    turns this into a UserError naming the user's input that caused it."""


SECTOR = 512
MEDIA = 0xF8
FAT12_MAX_CLUSTERS = 4084
# Some readers (GRUB among them) take 4085 and 4086 clusters for FAT12: skip the gap,
# as mkfs.fat does.
FAT16_MIN_CLUSTERS = 4087
FAT16_MAX_CLUSTERS = 65524
ROOT_ENTRIES = 512
# El Torito images are read in 2048-byte CD sectors: keep the image a whole number of them.
ALIGN_SECTORS = 4
CLUSTER_SECTORS = (1, 2, 4, 8, 16, 32, 64)

_ATTR_DIR = 0x10
_ATTR_ARCHIVE = 0x20
_ATTR_LABEL = 0x08
_ATTR_LFN = 0x0F
_NT_LOWER_BASE = 0x08
_NT_LOWER_EXT = 0x10
_FAT_EPOCH = calendar.timegm((1980, 1, 1, 0, 0, 0))
_FAT_LAST = calendar.timegm((2107, 12, 31, 23, 59, 58))

_SHORT_CHARS = r"A-Z0-9!#$%&'()@^_`{}~\-"
_SHORT_NAME = re.compile(rf"([{_SHORT_CHARS}]{{1,8}})(?:\.([{_SHORT_CHARS}]{{1,3}}))?")
_LABEL = re.compile(rf"[{_SHORT_CHARS} ]{{0,11}}")
_LONG_FORBIDDEN = re.compile(r'[\x00-\x1f"*/:<>?\\|]')
_LFN_CHARS = 13


@dataclass
class _Node:
    """A file (`data` set) or directory of the image, with its on-disk names."""

    name: str
    data: bytes | None = None
    children: dict[str, _Node] = field(default_factory=dict)
    short: bytes = b""
    case_flags: int = 0
    long_name: bool = False
    first_cluster: int = 0

    @property
    def is_dir(self) -> bool:
        return self.data is None

    def sorted_children(self) -> list[_Node]:
        return [self.children[key] for key in sorted(self.children)]


@dataclass(frozen=True)
class _Layout:
    """Where everything goes, for one cluster size."""

    cluster_sectors: int
    clusters: int
    fat_bits: int
    fat_sectors: int
    root_entries: int
    total_sectors: int
    reserved: int = 1  # sectors before the first FAT: the boot sector, and padding

    @property
    def root_start(self) -> int:
        return self.reserved + 2 * self.fat_sectors

    @property
    def data_start(self) -> int:
        return self.root_start + self.root_entries * 32 // SECTOR

    @property
    def cluster_bytes(self) -> int:
        return self.cluster_sectors * SECTOR


@dataclass(frozen=True)
class FatImage:
    """A FAT image and where each file's content is in it: (offset, size) in bytes."""

    data: bytes
    extents: dict[str, tuple[int, int]]


def make_fat_image(files: Mapping[str, bytes], *, label: str, volume_id: int, mtime: int) -> bytes:
    """A FAT image holding `files` ("EFI/BOOT/BOOTX64.EFI" -> content), parents created,
    as small as fits: FAT12 or FAT16 by cluster count, every time `mtime`, serial
    `volume_id`. Names that are not valid FAT long names raise FatError."""
    return fat_image(files, label=label, volume_id=volume_id, mtime=mtime).data


def fat_image(
    files: Mapping[str, bytes],
    *,
    label: str,
    volume_id: int,
    mtime: int,
    cd_sectors: bool = False,
) -> FatImage:
    """`make_fat_image`'s image with the offsets of its files. With `cd_sectors`, every
    file starts at a multiple of 2048 bytes (clusters of 2048 bytes or more, the data
    area aligned): an ISO whose directory records point into the image, when the image
    starts on a CD sector, shares the files' bytes with the FAT."""
    label_field = _label_field(label)
    if not 0 <= volume_id <= 0xFFFFFFFF:
        raise FatError(f"volume id {volume_id:#x} does not fit 32 bits")
    root = _tree(files)
    _name_children(root)
    layout = _smallest_layout(root, ALIGN_SECTORS if cd_sectors else 1)
    image = bytearray(layout.total_sectors * SECTOR)
    _write_boot_sector(image, layout, volume_id, label_field)
    fat = [0] * (layout.clusters + 2)
    fat[0], fat[1] = (0xF00 | MEDIA, 0xFFF) if layout.fat_bits == 12 else (0xFF00 | MEDIA, 0xFFFF)
    _allocate(root, layout, fat)
    stamp = _timestamp(mtime)
    root_dir = _directory_entries(root, None, stamp, label_field)
    image[layout.root_start * SECTOR : layout.root_start * SECTOR + len(root_dir)] = root_dir
    _write_contents(image, root, layout, stamp)
    table = _pack_fat(fat, layout.fat_bits)
    for copy in range(2):
        start = (layout.reserved + copy * layout.fat_sectors) * SECTOR
        image[start : start + len(table)] = table
    extents = {
        path: (_content_offset(root, path, layout), len(data)) for path, data in files.items()
    }
    return FatImage(bytes(image), extents)


def _content_offset(root: _Node, path: str, layout: _Layout) -> int:
    node = root
    for part in path.split("/"):
        node = node.children[part.upper()]
    if node.first_cluster == 0:  # empty: no cluster, the data area's start by convention
        return layout.data_start * SECTOR
    return (layout.data_start + (node.first_cluster - 2) * layout.cluster_sectors) * SECTOR


def _label_field(label: str) -> bytes:
    if not _LABEL.fullmatch(label):
        raise FatError(
            f"volume label {label!r}: use at most 11 upper-case letters, digits, spaces or "
            "_-!#$%&'()@^`{}~"
        )
    return (label or "NO NAME").ljust(11).encode("ascii")


def _tree(files: Mapping[str, bytes]) -> _Node:
    root = _Node("")
    for path, data in files.items():
        parts = path.split("/")
        for part in parts:
            _check_long_name(path, part)
        node = root
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            child = node.children.get(part.upper())
            if child is None:
                child = _Node(part, data=data if last else None)
                node.children[part.upper()] = child
            elif child.name != part:
                raise FatError(f"{path}: {part!r} clashes with {child.name!r} (FAT ignores case)")
            elif last or not child.is_dir:
                raise FatError(f"{path}: clashes with another file or directory of that name")
            node = child
    return root


def _check_long_name(path: str, part: str) -> None:
    if part in ("", ".", "..") or _LONG_FORBIDDEN.search(part) or part[-1] in ". ":
        raise FatError(
            f"{path!r}: each '/'-separated part must be a FAT file name: not empty, no "
            'control characters or "*/:<>?\\|, not ending in a dot or space'
        )
    if len(part.encode("utf-16-le")) > 255 * 2:
        raise FatError(f"{path}: {part[:20]}... is longer than 255 characters")


def _name_children(directory: _Node) -> None:
    """Give every child a short name: its own 8.3 name where it has one (lower case is
    kept through the NT case flags), else a unique BASIS~N alias next to a long name."""
    children = directory.sorted_children()
    used: set[bytes] = set()
    needs_alias = []
    for child in children:
        short = _plain_short_name(child.name)
        if short is None:
            needs_alias.append(child)
            continue
        child.short, child.case_flags = short
        used.add(child.short)
    for child in needs_alias:
        child.short = _alias(child.name, used)
        child.long_name = True
        used.add(child.short)
    for child in children:
        if child.is_dir:
            _name_children(child)


def _plain_short_name(name: str) -> tuple[bytes, int] | None:
    match = _SHORT_NAME.fullmatch(name.upper()) if name.isascii() else None
    if match is None:
        return None
    base, ext = name.partition(".")[0], name.partition(".")[2]
    flags = 0
    for part, lower_flag in ((base, _NT_LOWER_BASE), (ext, _NT_LOWER_EXT)):
        if part.islower():
            flags |= lower_flag
        elif part != part.upper():
            return None  # mixed case needs a long name
    short = match.group(1).ljust(8) + (match.group(2) or "").ljust(3)
    return short.encode("ascii"), flags


def _alias(name: str, used: set[bytes]) -> bytes:
    stem, dot, ext = name.lstrip(".").rpartition(".")
    if not dot:
        stem, ext = ext, ""
    base = _short_chars(stem) or "_"
    suffix = _short_chars(ext)[:3]
    for n in range(1, 1_000_000):
        tail = f"~{n}"
        short = (base[: 8 - len(tail)] + tail).ljust(8) + suffix.ljust(3)
        if short.encode("ascii") not in used:
            return short.encode("ascii")
    raise FatError(f"{name}: too many names share its short form")


def _short_chars(text: str) -> str:
    return "".join(
        c if re.fullmatch(f"[{_SHORT_CHARS}]", c) else "_" for c in text.upper() if c not in " ."
    )


def _entry_count(node: _Node) -> int:
    """Directory entries `node` takes in its parent: one, plus its long name's."""
    if not node.long_name:
        return 1
    return 1 + -(-len(node.name.encode("utf-16-le")) // (2 * _LFN_CHARS))


def _directory_bytes(directory: _Node) -> int:
    return 32 * (2 + sum(_entry_count(c) for c in directory.children.values()))


def _walk(directory: _Node) -> Iterator[_Node]:
    for child in directory.sorted_children():
        yield child
        if child.is_dir:
            yield from _walk(child)


def _node_bytes(node: _Node) -> int:
    return _directory_bytes(node) if node.data is None else len(node.data)


def _smallest_layout(root: _Node, align: int) -> _Layout:
    """The smallest layout; with `align` sectors > 1, clusters and the data area's start
    are multiples of it."""
    root_needed = 1 + sum(_entry_count(c) for c in root.children.values())
    root_entries = max(ROOT_ENTRIES, -(-root_needed // 16) * 16)
    if root_entries > 0xFFFF:
        raise FatError(f"{root_needed} entries do not fit a FAT root directory")
    sizes = [_node_bytes(node) for node in _walk(root)]
    layouts = []
    for cluster_sectors in CLUSTER_SECTORS:
        if cluster_sectors % align:
            continue
        cluster_bytes = cluster_sectors * SECTOR
        needed = sum(-(-size // cluster_bytes) for size in sizes)
        layout = _fit(cluster_sectors, max(needed, 1), root_entries, align)
        if layout is not None:
            layouts.append(layout)
    if not layouts:
        raise FatError("the files do not fit a FAT16 image (about 2 GiB at most)")
    return min(layouts, key=lambda lay: (lay.total_sectors, lay.cluster_sectors))


def _fit(cluster_sectors: int, needed: int, root_entries: int, align: int) -> _Layout | None:
    """The layout with at least `needed` clusters, grown until the clusters that rounding
    the image size adds still fit the FAT it describes (and its FAT type); reserved
    sectors pad the data area's start to a multiple of `align` sectors."""
    clusters = needed
    while clusters <= FAT16_MAX_CLUSTERS:
        if FAT12_MAX_CLUSTERS < clusters < FAT16_MIN_CLUSTERS:
            clusters = FAT16_MIN_CLUSTERS
        fat_bits = 12 if clusters <= FAT12_MAX_CLUSTERS else 16
        fat_sectors = -(-((clusters + 2) * fat_bits) // (8 * SECTOR))
        unpadded = 1 + 2 * fat_sectors + root_entries * 32 // SECTOR
        reserved = 1 + -unpadded % align
        meta = unpadded + reserved - 1
        total = -(-(meta + clusters * cluster_sectors) // ALIGN_SECTORS) * ALIGN_SECTORS
        actual = (total - meta) // cluster_sectors
        actual_bits = 12 if actual <= FAT12_MAX_CLUSTERS else 16
        if actual_bits == fat_bits and (actual + 2) * fat_bits <= fat_sectors * 8 * SECTOR:
            return _Layout(
                cluster_sectors, actual, fat_bits, fat_sectors, root_entries, total, reserved
            )
        clusters = actual
    return None


def _allocate(root: _Node, layout: _Layout, fat: list[int]) -> None:
    """Contiguous clusters for each directory and file, in directory order."""
    end_of_chain = 0xFFF if layout.fat_bits == 12 else 0xFFFF
    next_free = 2
    for node in _walk(root):
        count = -(-_node_bytes(node) // layout.cluster_bytes)
        if count == 0:
            continue
        node.first_cluster = next_free
        for cluster in range(next_free, next_free + count - 1):
            fat[cluster] = cluster + 1
        fat[next_free + count - 1] = end_of_chain
        next_free += count


def _write_contents(image: bytearray, root: _Node, layout: _Layout, stamp: _Stamp) -> None:
    parents = {id(child): root for child in root.children.values()}
    for node in _walk(root):
        if node.first_cluster == 0:
            continue
        if node.data is None:
            parent = parents[id(node)]
            content = _directory_entries(node, parent, stamp, None)
            parents.update({id(child): node for child in node.children.values()})
        else:
            content = node.data
        start = (layout.data_start + (node.first_cluster - 2) * layout.cluster_sectors) * SECTOR
        image[start : start + len(content)] = content


@dataclass(frozen=True)
class _Stamp:
    time: int
    date: int
    tenths: int


def _timestamp(mtime: int) -> _Stamp:
    # FAT times are local wall-clock values from 1980 to 2107; UTC keeps them reproducible.
    t = time.gmtime(min(max(mtime, _FAT_EPOCH), _FAT_LAST))
    return _Stamp(
        time=(t.tm_hour << 11) | (t.tm_min << 5) | (t.tm_sec // 2),
        date=((t.tm_year - 1980) << 9) | (t.tm_mon << 5) | t.tm_mday,
        tenths=(t.tm_sec % 2) * 100,
    )


def _directory_entries(
    directory: _Node, parent: _Node | None, stamp: _Stamp, label: bytes | None
) -> bytes:
    entries = []
    if parent is None:
        if label is not None and label != b"NO NAME    ":
            entries.append(_entry(label, _ATTR_LABEL, 0, 0, 0, stamp))
    else:
        entries.append(_entry(b".".ljust(11), _ATTR_DIR, 0, directory.first_cluster, 0, stamp))
        entries.append(_entry(b"..".ljust(11), _ATTR_DIR, 0, parent.first_cluster, 0, stamp))
    for child in directory.sorted_children():
        if child.long_name:
            entries.extend(_long_name_entries(child.name, child.short))
        attr = _ATTR_DIR if child.is_dir else _ATTR_ARCHIVE
        size = 0 if child.data is None else len(child.data)
        entries.append(
            _entry(child.short, attr, child.case_flags, child.first_cluster, size, stamp)
        )
    return b"".join(entries)


def _entry(short: bytes, attr: int, case_flags: int, cluster: int, size: int, st: _Stamp) -> bytes:
    return struct.pack(
        "<11sBBBHHHHHHHI",
        short,
        attr,
        case_flags,
        st.tenths,
        st.time,
        st.date,
        st.date,
        0,
        st.time,
        st.date,
        cluster,
        size,
    )


def _long_name_entries(name: str, short: bytes) -> list[bytes]:
    checksum = 0
    for byte in short:
        checksum = (((checksum & 1) << 7) + (checksum >> 1) + byte) & 0xFF
    units = name.encode("utf-16-le")
    if len(units) % (2 * _LFN_CHARS):
        units += b"\0\0"
    units += b"\xff" * (-len(units) % (2 * _LFN_CHARS))
    pieces = [units[i : i + 2 * _LFN_CHARS] for i in range(0, len(units), 2 * _LFN_CHARS)]
    entries = []
    for seq, piece in enumerate(pieces, start=1):
        order = seq | (0x40 if seq == len(pieces) else 0)
        entries.append(
            struct.pack(
                "<B10sBBB12sH4s",
                order,
                piece[:10],
                _ATTR_LFN,
                0,
                checksum,
                piece[10:22],
                0,
                piece[22:],
            )
        )
    return entries[::-1]


def _pack_fat(fat: list[int], bits: int) -> bytes:
    if bits == 16:
        return struct.pack(f"<{len(fat)}H", *fat)
    padded = [*fat, 0] if len(fat) % 2 else fat
    out = bytearray()
    for even, odd in zip(padded[::2], padded[1::2], strict=True):
        out += (even | (odd << 12)).to_bytes(3, "little")
    # An odd entry count ends in half a byte-triple: the padding entry must not spill
    # past the table (for the second FAT, into the root directory).
    return bytes(out[: (len(fat) * 12 + 7) // 8])


def _write_boot_sector(image: bytearray, layout: _Layout, volume_id: int, label: bytes) -> None:
    small_total = layout.total_sectors if layout.total_sectors < 0x10000 else 0
    struct.pack_into(
        "<3s8sHBHBHHBHHHII",
        image,
        0,
        b"\xeb\x3c\x90",
        b"MSWIN4.1",
        SECTOR,
        layout.cluster_sectors,
        layout.reserved,
        2,
        layout.root_entries,
        small_total,
        MEDIA,
        layout.fat_sectors,
        32,
        64,
        0,
        0 if small_total else layout.total_sectors,
    )
    fs_type = b"FAT12   " if layout.fat_bits == 12 else b"FAT16   "
    struct.pack_into("<BBBI11s8s", image, 36, 0x80, 0, 0x29, volume_id, label, fs_type)
    # Not a boot disk: if a BIOS ever jumps here, ask it for the next boot device (int 18h).
    image[62:67] = b"\xcd\x18\xf4\xeb\xfd"
    image[510:512] = b"\x55\xaa"
