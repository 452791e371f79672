"""The newc writer, checked by GNU cpio and bsdtar (libarchive) as independent readers."""

from __future__ import annotations

import io
import os
import re
import stat
import subprocess
from pathlib import Path

import pytest

from diskformats.cpio import CpioError, Entry, tree_entries, write_newc

EPOCH = 1_700_000_000


def make_tree(root: Path) -> None:
    (root / "usr/bin").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "empty").mkdir()
    busybox = root / "usr/bin/busybox"
    busybox.write_bytes(bytes(range(256)) * 41 + b"tail")  # not a multiple of 4
    busybox.chmod(0o700)
    (root / "etc/hostname").write_text("cpushare\n")
    (root / "etc/hostname").chmod(0o600)
    (root / "usr/bin/sh").symlink_to("busybox")
    (root / "init").write_text("#!/bin/sh\nexec /usr/bin/sh\n")
    (root / "init").chmod(0o744)
    (root / "zero").write_bytes(b"")


def archive(entries: list[Entry], mtime: int = EPOCH) -> bytes:
    out = io.BytesIO()
    written = write_newc(entries, out, mtime=mtime)
    assert written == len(out.getvalue())
    return out.getvalue()


def devices() -> list[Entry]:
    return [
        Entry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1)),
        Entry("dev/null", stat.S_IFCHR | 0o666, rdev=(1, 3)),
        Entry("dev/ttyS0", stat.S_IFCHR | 0o660, rdev=(4, 64)),
    ]


def list_with(tool: list[str], data: bytes) -> list[str]:
    proc = subprocess.run(tool, input=data, capture_output=True, check=True)
    return proc.stdout.decode().splitlines()


def member_name(listing_line: str) -> str:
    """The member name in a `cpio -tv` line: the field after the year, before any `->`."""
    match = re.search(r" \d{4} (\S+)(?: -> \S+)?$", listing_line)
    assert match, listing_line
    return match.group(1)


def test_cpio_lists_every_member_sorted_with_root_owner_and_modes(tmp_path: Path) -> None:
    make_tree(tmp_path)
    data = archive([*tree_entries(tmp_path), *devices()])
    lines = list_with(["cpio", "-itv", "--numeric-uid-gid"], data)
    table = {member_name(line): line for line in lines}
    assert list(table) == [
        "dev",
        "dev/console",
        "dev/null",
        "dev/ttyS0",
        "empty",
        "etc",
        "etc/hostname",
        "init",
        "usr",
        "usr/bin",
        "usr/bin/busybox",
        "usr/bin/sh",
        "zero",
    ]
    for line in lines:
        perms, nlink, uid, gid = line.split()[:4]
        assert (uid, gid) == ("0", "0")
        assert nlink == ("2" if perms.startswith("d") else "1")
    assert table["usr/bin/busybox"].startswith("-rwxr-xr-x")
    assert table["etc/hostname"].startswith("-rw-r--r--")
    assert table["init"].startswith("-rwxr-xr-x")
    assert table["usr/bin/sh"].startswith("lrwxrwxrwx") and table["usr/bin/sh"].endswith(
        "-> busybox"
    )
    assert table["dev/console"].split()[:6] == ["crw-------", "1", "0", "0", "5,", "1"]
    assert table["dev/ttyS0"].split()[4:6] == ["4,", "64"]


def test_bsdtar_extracts_the_same_content_modes_symlinks_and_times(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    make_tree(src)
    data = archive(tree_entries(src))
    subprocess.run(
        ["bsdtar", "-xpf", "-", "--no-same-owner", "-C", str(dst)], input=data, check=True
    )
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        got = dst / rel
        if path.is_symlink():
            assert os.readlink(got) == os.readlink(path)
            continue
        assert stat.S_IMODE(got.lstat().st_mode) == (
            0o755 if path.is_dir() or path.stat().st_mode & 0o111 else 0o644
        ), rel
        if path.is_file():
            assert got.read_bytes() == path.read_bytes(), rel
            assert got.stat().st_mtime == EPOCH, rel
    assert sorted(p.relative_to(dst) for p in dst.rglob("*")) == sorted(
        p.relative_to(src) for p in src.rglob("*")
    )


def test_bsdtar_reads_devices_and_inline_data() -> None:
    entries = [*devices(), Entry("etc/motd", stat.S_IFREG | 0o644, data=b"hi\n")]
    lines = list_with(["bsdtar", "-tvf", "-", "--numeric-owner"], archive(entries))
    console = next(line for line in lines if line.endswith("dev/console"))
    assert console.split()[:5] == ["crw-------", "1", "0", "0", "5,1"]
    motd = next(line for line in lines if line.endswith("etc/motd"))
    assert motd.split()[4] == "3"
    proc = subprocess.run(
        ["bsdtar", "-xOf", "-", "etc/motd"], input=archive(entries), capture_output=True
    )
    assert proc.stdout == b"hi\n"


def test_same_input_gives_the_same_bytes(tmp_path: Path) -> None:
    make_tree(tmp_path)
    first = archive(tree_entries(tmp_path))
    os.utime(tmp_path / "init", (0, 0))  # host times must not leak into the archive
    second = archive(list(reversed(tree_entries(tmp_path))))
    assert first == second


def test_archive_is_padded_to_512_and_ends_with_trailer(tmp_path: Path) -> None:
    make_tree(tmp_path)
    data = archive(tree_entries(tmp_path))
    assert len(data) % 512 == 0
    assert b"TRAILER!!!\0" in data[-1024:]
    assert data.rstrip(b"\0").endswith(b"TRAILER!!!")


def test_inodes_are_sequential_and_times_fixed() -> None:
    data = archive([Entry("a", stat.S_IFREG | 0o644, data=b"x"), Entry("b/c", stat.S_IFDIR)])
    headers = [data[i : i + 110] for i in range(len(data)) if data.startswith(b"070701", i)]
    inodes = [int(h[6:14], 16) for h in headers]
    mtimes = [int(h[46:54], 16) for h in headers[:-1]]
    assert inodes == [1, 2, 3, 0]  # a, b (implicit), b/c, trailer
    assert mtimes == [EPOCH] * 3


def test_missing_parents_are_added_as_directories() -> None:
    lines = list_with(["cpio", "-itv"], archive([Entry("a/b/c", stat.S_IFREG | 0o644, data=b"x")]))
    assert [(line[0], member_name(line)) for line in lines] == [
        ("d", "a"),
        ("d", "a/b"),
        ("-", "a/b/c"),
    ]


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([Entry("a", stat.S_IFREG), Entry("a", stat.S_IFDIR)], "appears twice"),
        ([Entry("/abs", stat.S_IFREG)], "relative"),
        ([Entry("a/../b", stat.S_IFREG)], "relative"),
        ([Entry("a", 0o644)], "no known file type"),
        ([Entry("a", stat.S_IFLNK | 0o777)], "symlink needs its target"),
        ([Entry("a", stat.S_IFREG), Entry("a/b", stat.S_IFREG)], "not a directory"),
        ([Entry("a", stat.S_IFREG, source=Path("/nonexistent/x"))], "not a readable"),
    ],
)
def test_bad_entries_are_refused_before_writing(entries: list[Entry], message: str) -> None:
    out = io.BytesIO()
    with pytest.raises(CpioError, match=message):
        write_newc(entries, out, mtime=EPOCH)
    assert out.getvalue() == b""


def test_tree_with_a_fifo_is_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(CpioError, match="pipe: not a directory, regular file or symlink"):
        tree_entries(tmp_path)
