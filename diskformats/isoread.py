"""Describing a built ISO: volume, El Torito entries, hybrid MBR and GPT, files, manifest."""

from __future__ import annotations

import json
import struct
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import pycdlib
from pycdlib.pycdlibexception import PyCdlibException

from diskformats.errors import UserError
from diskformats.gpt import GptHeader, parse_header, read_entries, read_header

CD_SECTOR = 2048
DISK_SECTOR = 512
MANIFEST = "manifest.json"

PLATFORMS = {0x00: "BIOS", 0x01: "PowerPC", 0x02: "Mac", 0xEF: "EFI"}
EMULATIONS = {0: "none", 1: "1.2M floppy", 2: "1.44M floppy", 3: "2.88M floppy", 4: "hard disk"}
MBR_TYPES = {
    0x00: "empty",
    0x0C: "FAT32 LBA",
    0x17: "hidden IFS",
    0x83: "Linux",
    0xCD: "ISO (CD)",
    0xEE: "GPT protective",
    0xEF: "EFI System",
}
GPT_TYPES = {
    "c12a7328-f81f-11d2-ba4b-00a0c93ec93b": "EFI System",
    "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7": "Basic data",
    "0fc63daf-8483-4772-8e79-3d69d8477de4": "Linux filesystem",
    "21686148-6449-6e6f-744e-656564454649": "BIOS boot",
    "48465300-0000-11aa-aa11-00306543ecac": "Apple HFS+",
}
_JOLIET_LEVELS = {b"%/@": 1, b"%/C": 2, b"%/E": 3}


@dataclass(frozen=True)
class Volume:
    label: str
    system_id: str
    application_id: str
    created: str
    blocks: int
    block_size: int
    iso_level: int
    rock_ridge: str | None
    joliet_level: int | None


@dataclass(frozen=True)
class BootEntry:
    platform: str
    bootable: bool
    emulation: str
    load_segment: int
    load_sectors: int  # 512-byte sectors; 0 means "the whole image" for EFI
    lba: int
    path: str | None


@dataclass(frozen=True)
class MbrPartition:
    number: int
    bootable: bool
    type: int
    type_name: str
    start: int
    sectors: int
    path: str | None


@dataclass(frozen=True)
class GptPartition:
    number: int
    type_guid: str
    type_name: str
    guid: str
    name: str
    first_lba: int
    last_lba: int
    attributes: int
    path: str | None


@dataclass(frozen=True)
class Gpt:
    disk_guid: str
    header_crc_ok: bool
    entries_crc_ok: bool
    backup: str  # "ok", "missing" or what differs
    partitions: list[GptPartition]


@dataclass(frozen=True)
class IsoEntry:
    path: str
    size: int
    lba: int
    is_dir: bool


@dataclass(frozen=True)
class IsoReport:
    path: str
    file_size: int
    volume: Volume
    boot_catalog: str | None
    boot_entries: list[BootEntry]
    mbr_disk_id: int | None
    mbr_partitions: list[MbrPartition]
    gpt: Gpt | None
    files: list[IsoEntry]
    manifest: Any
    manifest_error: str | None


def inspect_iso(path: Path) -> IsoReport:
    """Everything `livecd inspect` shows about the ISO at `path`. Bad input: UserError."""
    try:
        f = path.open("rb")
    except FileNotFoundError:
        raise UserError(f"{path}: no such file: give the path of an ISO image") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read it: {exc.strerror}") from None
    with f:
        if _read_at(f, 16 * CD_SECTOR + 1, 5) != b"CD001":
            raise UserError(f"{path}: not an ISO 9660 image (no CD001 volume descriptor)")
        iso = open_iso(path, f)
        try:
            return _report(path, f, iso)
        except PyCdlibException as exc:
            raise UserError(f"{path}: its directory tree cannot be read: {exc}") from None
        finally:
            iso.close()


def open_iso(path: Path, f: BinaryIO) -> Any:
    """pycdlib's reader of the ISO open in `f` (read from `path`), or a UserError saying it
    is no ISO 9660 image it can read. The caller closes it."""
    iso = pycdlib.PyCdlib()
    try:
        iso.open_fp(f)
    except PyCdlibException as exc:
        raise UserError(f"{path}: not a readable ISO 9660 image: {exc}") from None
    return iso


def _report(path: Path, f: BinaryIO, iso: Any) -> IsoReport:
    naming = _naming(iso)
    entries = list(_walk(iso, naming))
    by_lba = {e.lba: e.path for e in entries if not e.is_dir and e.size}
    catalog_lba = _boot_catalog_lba(f)
    boot_entries = _boot_entries(f, catalog_lba, by_lba) if catalog_lba is not None else []
    system_area = _read_at(f, 0, 16 * CD_SECTOR)
    disk_id, mbr = _mbr(system_area, by_lba)
    manifest, manifest_error = _manifest(iso, naming, entries)
    return IsoReport(
        path=str(path),
        file_size=path.stat().st_size,
        volume=_volume(iso),
        boot_catalog=None if catalog_lba is None else _catalog_path(catalog_lba, entries),
        boot_entries=boot_entries,
        mbr_disk_id=disk_id,
        mbr_partitions=mbr,
        gpt=_gpt(f, system_area, by_lba),
        files=entries,
        manifest=manifest,
        manifest_error=manifest_error,
    )


def _read_at(f: BinaryIO, offset: int, size: int) -> bytes:
    f.seek(offset)
    return f.read(size)


def _text(field: bytes) -> str:
    return field.decode("ascii", errors="replace").rstrip(" \0")


def _volume(iso: Any) -> Volume:
    pvd = iso.pvd
    joliet = iso.joliet_vd.escape_sequences[:3] if iso.joliet_vd is not None else None
    app = pvd.application_identifier
    return Volume(
        label=_text(pvd.volume_identifier),
        system_id=_text(pvd.system_identifier),
        application_id=_text(app.text if hasattr(app, "text") else app),
        created=_date(pvd.volume_creation_date),
        blocks=pvd.space_size,
        block_size=pvd.log_block_size,
        iso_level=iso.interchange_level,
        rock_ridge=iso.rock_ridge or None,
        joliet_level=_JOLIET_LEVELS.get(joliet) if joliet else None,
    )


def _date(d: Any) -> str:
    if d.year == 0:
        return "unset"
    minutes = d.gmtoffset * 15
    zone = "Z" if minutes == 0 else f"{minutes // 60:+03d}:{abs(minutes) % 60:02d}"
    return (
        f"{d.year:04d}-{d.month:02d}-{d.dayofmonth:02d}T"
        f"{d.hour:02d}:{d.minute:02d}:{d.second:02d}{zone}"
    )


def _naming(iso: Any) -> str:
    """The name space with the real file names: Rock Ridge, else Joliet, else ISO 9660."""
    if iso.has_rock_ridge():
        return "rr_path"
    if iso.has_joliet():
        return "joliet_path"
    return "iso_path"


def _walk(iso: Any, naming: str) -> Iterator[IsoEntry]:
    for directory, dirs, files in iso.walk(**{naming: "/"}):
        for name in sorted(dirs) + sorted(files):
            path = f"{directory.rstrip('/')}/{name}"
            record = iso.get_record(**{naming: path})
            shown = path.removesuffix(";1") if naming == "iso_path" else path
            is_dir = name in dirs
            size = 0 if is_dir else record.get_data_length()
            yield IsoEntry(shown, size, record.extent_location(), is_dir)


def _manifest(iso: Any, naming: str, entries: list[IsoEntry]) -> tuple[Any, str | None]:
    # Plain ISO 9660 names are upper case and may be cut to 8.3.
    wanted = {f"/{MANIFEST}", f"/{MANIFEST[:12]}"}
    entry = next((e for e in entries if e.path.lower() in wanted and not e.is_dir), None)
    if entry is None:
        return None, None
    path = entry.path + ";1" if naming == "iso_path" else entry.path
    with iso.open_file_from_iso(**{naming: path}) as fp:
        data = fp.read()
    try:
        return json.loads(data), None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"{MANIFEST} is not valid JSON: {exc}"


def _boot_catalog_lba(f: BinaryIO) -> int | None:
    for sector in range(16, 64):
        descriptor = _read_at(f, sector * CD_SECTOR, CD_SECTOR)
        if descriptor[1:6] != b"CD001" or descriptor[0] == 255:
            return None
        if descriptor[0] == 0 and descriptor[7:30] == b"EL TORITO SPECIFICATION":
            return int(struct.unpack_from("<I", descriptor, 0x47)[0])
    return None


def _catalog_path(lba: int, entries: list[IsoEntry]) -> str | None:
    return next((e.path for e in entries if e.lba == lba and not e.is_dir), None)


def _boot_entries(f: BinaryIO, catalog_lba: int, by_lba: dict[int, str]) -> list[BootEntry]:
    catalog = _read_at(f, catalog_lba * CD_SECTOR, CD_SECTOR)
    if catalog[0] != 0x01 or catalog[30:32] != b"\x55\xaa":
        raise UserError(f"the El Torito boot catalog at LBA {catalog_lba} has no validation entry")
    entries = [_boot_entry(catalog[32:64], catalog[1], by_lba)]
    offset = 64
    while offset + 32 <= len(catalog) and catalog[offset] in (0x90, 0x91):
        final, platform = catalog[offset] == 0x91, catalog[offset + 1]
        count = struct.unpack_from("<H", catalog, offset + 2)[0]
        offset += 32
        for _ in range(count):
            entries.append(_boot_entry(catalog[offset : offset + 32], platform, by_lba))
            offset += 32
            while offset < len(catalog) and catalog[offset] == 0x44:  # extension entries
                offset += 32
        if final:
            break
    return entries


def _boot_entry(raw: bytes, platform: int, by_lba: dict[int, str]) -> BootEntry:
    indicator, media, segment, _, count, lba = struct.unpack_from("<BBHBxHI", raw)
    return BootEntry(
        platform=PLATFORMS.get(platform, f"{platform:#04x}"),
        bootable=indicator == 0x88,
        emulation=EMULATIONS.get(media & 0x0F, f"{media & 0x0F:#x}"),
        load_segment=segment,
        load_sectors=count,
        lba=lba,
        path=by_lba.get(lba),
    )


def _file_at(disk_sector: int, by_lba: dict[int, str]) -> str | None:
    if disk_sector % (CD_SECTOR // DISK_SECTOR):
        return None
    return by_lba.get(disk_sector // (CD_SECTOR // DISK_SECTOR))


def _mbr(system_area: bytes, by_lba: dict[int, str]) -> tuple[int | None, list[MbrPartition]]:
    if system_area[510:512] != b"\x55\xaa":
        return None, []
    partitions = []
    for number in range(1, 5):
        raw = system_area[446 + 16 * (number - 1) : 446 + 16 * number]
        status, kind = raw[0], raw[4]
        start, sectors = struct.unpack_from("<II", raw, 8)
        if kind == 0 and sectors == 0:
            continue
        partitions.append(
            MbrPartition(
                number,
                status == 0x80,
                kind,
                MBR_TYPES.get(kind, "unknown"),
                start,
                sectors,
                _file_at(start, by_lba),
            )
        )
    return int(struct.unpack_from("<I", system_area, 440)[0]), partitions


def _gpt(f: BinaryIO, system_area: bytes, by_lba: dict[int, str]) -> Gpt | None:
    header = parse_header(system_area[DISK_SECTOR : 2 * DISK_SECTOR])
    if header is None:
        return None
    entries = read_entries(f, header)
    partitions = []
    for number in range(1, header.entry_count + 1):
        raw = entries[(number - 1) * header.entry_size : number * header.entry_size]
        if len(raw) < 128 or raw[:16] == bytes(16):
            continue
        type_guid = str(uuid.UUID(bytes_le=raw[:16]))
        first, last, attributes = struct.unpack_from("<QQQ", raw, 32)
        partitions.append(
            GptPartition(
                number=number,
                type_guid=type_guid,
                type_name=GPT_TYPES.get(type_guid, "unknown"),
                guid=str(uuid.UUID(bytes_le=raw[16:32])),
                name=raw[56:128].decode("utf-16-le", errors="replace").split("\0")[0],
                first_lba=first,
                last_lba=last,
                attributes=attributes,
                path=_file_at(first, by_lba),
            )
        )
    return Gpt(
        disk_guid=str(header.disk_guid),
        header_crc_ok=header.crc_ok,
        entries_crc_ok=zlib.crc32(entries) == header.entries_crc,
        backup=_gpt_backup(f, header, entries),
        partitions=partitions,
    )


def _gpt_backup(f: BinaryIO, primary: GptHeader, primary_entries: bytes) -> str:
    backup = read_header(f, primary.backup_lba)
    if backup is None:
        return "missing"
    entries = read_entries(f, backup)
    problems = []
    if not backup.crc_ok:
        problems.append("header CRC wrong")
    if zlib.crc32(entries) != backup.entries_crc:
        problems.append("entries CRC wrong")
    if backup.disk_guid != primary.disk_guid:
        problems.append("disk GUID differs")
    if entries != primary_entries:
        problems.append("entries differ")
    return ", ".join(problems) or "ok"
