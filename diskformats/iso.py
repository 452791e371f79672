"""Writing the hybrid ISO with pycdlib: ISO9660 level 3 + Rock Ridge + Joliet, El Torito
for BIOS (ISOLINUX) and UEFI (the ESP image), and an isohybrid MBR + GPT so that the same
file boots as a CD and, written with `dd`, as a USB disk.

pycdlib stamps the wall clock (in local time) and random UUIDs into what it writes. The
`reproducible` adapter below swaps the `time` and `uuid` modules seen by pycdlib's own
modules, for the duration of one write, for a clock fixed at SOURCE_DATE_EPOCH in UTC and
UUIDs derived from a seed. Nothing in pycdlib's installed files is changed.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import time
import types
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import pycdlib
import pycdlib.dates
import pycdlib.headervd
import pycdlib.isohybrid
import pycdlib.pycdlib
import pycdlib.utils
from pycdlib.pycdlibexception import PyCdlibException

from diskformats.errors import UserError
from diskformats.files import atomic_file, sha256_file
from diskformats.gpt import mend_gpt
from diskformats.isolink import CD_SECTOR, Link, link_files

# pycdlib's modules that read the clock, and the one that makes UUIDs.
_TIME_USERS: tuple[Any, ...] = (pycdlib.pycdlib, pycdlib.headervd, pycdlib.dates, pycdlib.utils)
_UUID_USER: Any = pycdlib.isohybrid
# The backup GPT at the end of a hybrid image: its header and its 128-entry array.
_BACKUP_GPT_BYTES = 33 * 512


@dataclass(frozen=True)
class Inside:
    """Where a file's bytes already are on the CD: `size` bytes at `offset` (a multiple
    of 2048) in the ISO file at `container`."""

    container: str
    offset: int
    size: int


@dataclass(frozen=True)
class IsoFile:
    """A file of the ISO: `path` relative to its root, content from `source` or `data`,
    or the bytes of another file's part (`inside`), not stored twice."""

    path: str
    source: Path | None = None
    data: bytes = b""
    inside: Inside | None = None

    @property
    def size(self) -> int:
        return self.source.stat().st_size if self.source else len(self.data)

    def open(self) -> BinaryIO:
        return self.source.open("rb") if self.source else io.BytesIO(self.data)


@contextlib.contextmanager
def reproducible(epoch: int, seed: bytes) -> Iterator[None]:
    """pycdlib with its clock fixed at `epoch` (UTC) and its UUIDs derived from `seed`."""
    clock = types.SimpleNamespace(
        time=lambda: float(epoch),
        localtime=time.gmtime,
        gmtime=time.gmtime,
        strftime=time.strftime,
        struct_time=time.struct_time,
    )
    counter = iter(range(1 << 30))

    def uuid4() -> uuid.UUID:
        digest = hashlib.sha256(seed + next(counter).to_bytes(4, "little")).digest()
        return uuid.UUID(bytes=digest[:16], version=4)

    uuids = types.SimpleNamespace(uuid4=uuid4, UUID=uuid.UUID)
    saved = [(m, m.time) for m in _TIME_USERS]
    saved_uuid = _UUID_USER.uuid
    try:
        for module, _ in saved:
            module.time = clock
        _UUID_USER.uuid = uuids
        yield
    finally:
        for module, original in saved:
            module.time = original
        _UUID_USER.uuid = saved_uuid


def _d_chars(text: str) -> str:
    return "".join(c if c.isascii() and (c.isalnum() or c == "_") else "_" for c in text.upper())


def iso9660_name(part: str, is_dir: bool) -> str:
    """An ISO9660 level 3 identifier for one path component (Rock Ridge and Joliet keep
    the real name)."""
    part = part.lstrip(".")
    if is_dir:
        return _d_chars(part)[:31] or "_"
    stem, dot, ext = part.rpartition(".")
    if not dot:
        stem, ext = ext, ""
    return f"{_d_chars(stem)[:26] or '_'}.{_d_chars(ext)[:3]};1"


def write_iso(
    files: Sequence[IsoFile],
    out: Path,
    *,
    label: str,
    bios_boot: str,
    efi_image: str,
    epoch: int,
    seed: bytes,
) -> str:
    """Write the ISO to a temporary file next to `out`, then rename it; its sha256. Files
    `inside` another are written empty, then their records pointed at its bytes."""
    iso_paths: dict[str, str] = {}
    iso = pycdlib.PyCdlib()
    with reproducible(epoch, seed), contextlib.ExitStack() as opened:
        iso.new(
            interchange_level=3,
            sys_ident="LINUX",
            vol_ident=label,
            app_ident_str="CPUSHARE LIVECD",
            rock_ridge="1.09",
            joliet=3,
        )
        for f in sorted(files, key=lambda f: f.path):
            _add_file(iso, f, opened.enter_context(f.open()), iso_paths)
        # The ISOLINUX entry first: BIOS firmware takes the first entry, and isohybrid
        # needs a boot file that carries ISOLINUX's signature.
        iso.add_eltorito(
            iso_paths[bios_boot],
            bootcatfile="/ISOLINUX/BOOT.CAT;1",
            rr_bootcatname="boot.cat",
            joliet_bootcatfile="/isolinux/boot.cat",
            boot_load_size=4,
            boot_info_table=True,
        )
        iso.add_eltorito(iso_paths[efi_image], efi=True, platform_id=0xEF)
        mbr_id = int.from_bytes(hashlib.sha256(seed + b"mbr").digest()[:4], "little")
        iso.add_isohybrid(efi=True, mbr_id=mbr_id)
        _room_for_the_backup_gpt(iso)
        disk_guid = uuid.UUID(bytes=hashlib.sha256(seed + b"gpt").digest()[:16], version=4)
        shared = {f.path: f.inside for f in files if f.inside}
        return _write_image(iso, out, disk_guid, shared, iso_paths)


class _RoomForTheBackupGpt(pycdlib.isohybrid.IsoHybrid):
    """pycdlib's hybrid MBR and GPT, with the image padded past its last file by at least
    the backup GPT's 33 sectors.

    pycdlib pads a hybrid image to whole cylinders (1 MiB) and writes the backup GPT into
    the last 33 sectors, but it reserves no room for them: an image whose files ended
    within 16.5 KiB before a cylinder's end had the end of its last file (the kernel)
    overwritten by the GPT, and did not boot. The padding it writes and the GPT's place
    both come from `_calc_cc`; this one counts the GPT in."""

    __slots__ = ()

    def _calc_cc(self, iso_size: int) -> tuple[int, int]:
        cylinder = int(self.geometry_heads * self.geometry_sectors * 512)
        padding = _BACKUP_GPT_BYTES + (-(iso_size + _BACKUP_GPT_BYTES)) % cylinder
        return min((iso_size + padding) // cylinder, 1024), padding


def _room_for_the_backup_gpt(iso: pycdlib.PyCdlib) -> None:
    iso.isohybrid_mbr.__class__ = _RoomForTheBackupGpt


def _add_file(iso: pycdlib.PyCdlib, f: IsoFile, fp: BinaryIO, iso_paths: dict[str, str]) -> None:
    parts = f.path.split("/")
    for depth in range(1, len(parts)):
        directory = "/".join(parts[:depth])
        if directory not in iso_paths:
            iso_dir = "/" + "/".join(iso9660_name(p, True) for p in parts[:depth])
            iso.add_directory(iso_dir, rr_name=parts[depth - 1], joliet_path="/" + directory)
            iso_paths[directory] = iso_dir
    parent = iso_paths.get("/".join(parts[:-1]), "")
    iso_path = f"{parent}/{iso9660_name(parts[-1], False)}"
    if iso_path in iso_paths.values():
        raise UserError(f"two files of the ISO map to the same ISO9660 name {iso_path}")
    size = 0 if f.inside else f.size
    iso.add_fp(fp, size, iso_path, rr_name=parts[-1], joliet_path="/" + f.path)
    iso_paths[f.path] = iso_path


def _links(
    iso: pycdlib.PyCdlib, shared: Mapping[str, Inside], iso_paths: dict[str, str]
) -> list[Link]:
    """Each shared file's records, and where in its container its bytes are."""
    links = []
    for path, inside in shared.items():
        if inside.offset % CD_SECTOR:
            raise ValueError(f"{path}: offset {inside.offset} is not on a CD sector")
        start = iso.get_record(iso_path=iso_paths[inside.container]).extent_location()
        lba = int(start) + inside.offset // CD_SECTOR
        links.append(Link(iso_paths[path], "/" + path, lba, inside.size))
    return links


def _write_image(
    iso: pycdlib.PyCdlib,
    out: Path,
    disk_guid: uuid.UUID,
    shared: Mapping[str, Inside],
    iso_paths: dict[str, str],
) -> str:
    try:
        with atomic_file(out) as (fp, tmp):
            iso.write_fp(fp)
            link_files(fp, _links(iso, shared, iso_paths))
            mend_gpt(fp, disk_guid=disk_guid)
            fp.flush()
            digest = sha256_file(tmp)
    except (OSError, PyCdlibException) as exc:
        raise UserError(f"cannot write {out}: {exc}; choose another output with -o") from None
    finally:
        iso.close()
    return digest
