"""Unpacking .deb files: content comes out, nothing lands outside the staging tree."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from livecd.deb import extract_data, unpacked
from livecd.errors import BuildError


def _ar(members: list[tuple[str, bytes]]) -> bytes:
    out = [b"!<arch>\n"]
    for name, data in members:
        header = f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(data):<10}`\n"
        out += [header.encode(), data, b"\n" if len(data) % 2 else b""]
    return b"".join(out)


def make_deb(path: Path, members: list[tarfile.TarInfo], files: dict[str, bytes]) -> Path:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:xz") as tar:
        for info in members:
            data = files.get(info.name)
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    path.write_bytes(
        _ar([("debian-binary", b"2.0\n"), ("control.tar.xz", b""), ("data.tar.xz", buf.getvalue())])
    )
    return path


def _file(name: str, mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode = mode
    return info


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


def _dir(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    return info


def test_files_dirs_and_links_come_out(tmp_path: Path) -> None:
    deb = make_deb(
        tmp_path / "ok.deb",
        [
            _dir("./usr"),
            _dir("./usr/bin"),
            _file("./usr/bin/tool", 0o755),
            _link("./usr/bin/alias", "tool"),
            _link("./usr/bin/hard", "./usr/bin/tool", tarfile.LNKTYPE),
        ],
        {"./usr/bin/tool": b"#!/bin/sh\n"},
    )
    dest = tmp_path / "out"
    dest.mkdir()
    extract_data(deb, dest)
    assert (dest / "usr/bin/tool").read_bytes() == b"#!/bin/sh\n"
    assert (dest / "usr/bin/tool").stat().st_mode & 0o777 == 0o755
    assert (dest / "usr/bin/alias").readlink() == Path("tool")
    assert (dest / "usr/bin/hard").read_bytes() == b"#!/bin/sh\n"


@pytest.mark.parametrize(
    ("members", "files"),
    [
        ([_file("../evil")], {"../evil": b"x"}),
        ([_file("/etc/evil")], {"/etc/evil": b"x"}),
        ([_file("./usr/../../evil")], {"./usr/../../evil": b"x"}),
        ([_link("./lib", "/etc"), _file("./lib/passwd")], {"./lib/passwd": b"x"}),
        ([_link("./lib", "../../.."), _file("./lib/evil")], {"./lib/evil": b"x"}),
        ([_link("./x", "../../etc/passwd", tarfile.LNKTYPE)], {}),
    ],
    ids=[
        "dotdot",
        "absolute",
        "normalised-dotdot",
        "through-abs-link",
        "through-rel-link",
        "hardlink-out",
    ],
)
def test_members_escaping_the_tree_are_refused(
    tmp_path: Path, members: list[tarfile.TarInfo], files: dict[str, bytes]
) -> None:
    deb = make_deb(tmp_path / "evil.deb", members, files)
    dest = tmp_path / "stage" / "root"
    dest.mkdir(parents=True)
    with pytest.raises(BuildError, match="refused"):
        extract_data(deb, dest)
    assert not (tmp_path / "evil").exists()
    assert not (tmp_path / "stage" / "evil").exists()


def test_not_a_package_is_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.deb"
    bogus.write_bytes(b"PK\x03\x04 not an ar archive")
    with pytest.raises(BuildError, match="not a Debian package"):
        extract_data(bogus, tmp_path)


def test_a_package_is_unpacked_once_then_reused(tmp_path: Path) -> None:
    deb = make_deb(tmp_path / "abc123.deb", [_file("./f")], {"./f": b"one"})
    first = unpacked(deb, tmp_path / "cache")
    (first / "f").write_bytes(b"marker")
    assert unpacked(deb, tmp_path / "cache") == first
    assert (first / "f").read_bytes() == b"marker"


def test_a_refused_package_leaves_no_unpacked_tree(tmp_path: Path) -> None:
    deb = make_deb(tmp_path / "bad.deb", [_file("../evil")], {"../evil": b"x"})
    with pytest.raises(BuildError):
        unpacked(deb, tmp_path / "cache")
    assert list((tmp_path / "cache" / "unpacked").iterdir()) == []
