"""Writing the `cpushare` package as a `.deb`, in Python and reproducibly.

A `.deb` is an `ar` archive of `debian-binary`, `control.tar.xz` and `data.tar.xz`.
Both tar archives are written as dpkg-deb writes them (GNU format, `./` paths, parents
before children), sorted, owned by root:root, every time SOURCE_DATE_EPOCH; xz output
depends on the input alone. The same sources therefore give the same bytes, whatever the
build directory, user, umask or clock.
"""

from __future__ import annotations

import hashlib
import io
import lzma
import stat
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from diskformats.ar import write_ar
from diskformats.cpio import Entry
from livecd.debpkg import contents
from livecd.files import atomic_file


@dataclass(frozen=True)
class Built:
    path: Path
    size: int
    sha256: str


def _data(entry: Entry) -> bytes:
    return entry.source.read_bytes() if entry.source is not None else entry.data


def _tar(members: Iterable[tuple[str, int, bytes | None]], epoch: int) -> bytes:
    """A tar.xz of (path, mode, data) members; data None for a directory."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for path, mode, data in members:
            info = tarfile.TarInfo("./" if path == "." else f"./{path}")
            info.mode = stat.S_IMODE(mode)
            info.mtime = epoch
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return lzma.compress(buf.getvalue(), format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64)


def _installed_kib(entries: list[Entry], datas: dict[str, bytes]) -> int:
    """Installed-Size as dpkg-gencontrol counts it: each file in whole KiB, 1 per dir."""
    return sum((len(datas[e.path]) + 1023) // 1024 if e.path in datas else 1 for e in entries)


def deb_bytes(epoch: int) -> bytes:
    entries = contents.files(epoch)
    datas = {e.path: _data(e) for e in entries if stat.S_ISREG(e.mode)}
    data_tar = _tar(
        [(".", stat.S_IFDIR | 0o755, None)]
        + [(e.path, e.mode, datas.get(e.path)) for e in entries],
        epoch,
    )
    md5sums = "".join(f"{hashlib.md5(datas[p]).hexdigest()}  {p}\n" for p in sorted(datas))
    control_members: list[tuple[str, int, bytes | None]] = [
        (".", 0o755, None),
        ("conffiles", 0o644, "".join(f"/{c}\n" for c in contents.CONFFILES).encode()),
        ("control", 0o644, contents.control(_installed_kib(entries, datas)).encode()),
        ("md5sums", 0o644, md5sums.encode()),
        *((name, 0o755, data) for name, data in contents.maintainer_scripts()),
    ]
    control_tar = _tar(sorted(control_members), epoch)
    out = io.BytesIO()
    write_ar(
        [
            ("debian-binary", b"2.0\n"),
            ("control.tar.xz", control_tar),
            ("data.tar.xz", data_tar),
        ],
        out,
        mtime=epoch,
    )
    return out.getvalue()


def file_name() -> str:
    return f"{contents.PACKAGE}_{contents.VERSION}_{contents.ARCHITECTURE}.deb"


def build(out_dir: Path, epoch: int) -> Built:
    """Write `cpushare_VERSION_amd64.deb` into `out_dir` through a temporary file."""
    data = deb_bytes(epoch)
    path = out_dir / file_name()
    with atomic_file(path) as (f, _):
        f.write(data)
    return Built(path, len(data), hashlib.sha256(data).hexdigest())
