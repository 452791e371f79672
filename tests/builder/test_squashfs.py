"""The live system's squashfs image and the first-stage initramfs that carries it."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from diskformats.compress import compress
from diskformats.cpio import Entry
from livecd import squashfs, stage1
from livecd.errors import BuildError

EPOCH = 1_700_000_000


def _entries(tmp_path: Path) -> list[Entry]:
    source = tmp_path / "python3"
    source.write_bytes(b"\x7fELF" + bytes(range(256)) * 64)
    return [
        Entry("tmp", stat.S_IFDIR | 0o1777),
        Entry("usr/bin/python3.11", stat.S_IFREG | 0o755, source=source),
        Entry("etc/passwd", stat.S_IFREG | 0o644, data=b"root:x:0:0::/root:/bin/sh\n"),
        Entry("bin/sh", stat.S_IFLNK | 0o777, data=b"/bin/busybox"),
        Entry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1)),
    ]


def _listing(image: bytes, tmp_path: Path) -> dict[str, list[str]]:
    path = tmp_path / "listing.sqfs"
    path.write_bytes(image)
    out = subprocess.run(
        ["unsquashfs", "-lls", "-n", "-d", "", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = [row for row in (line.split() for line in out.splitlines()) if len(row) >= 6]
    return {row[5]: row for row in rows}


def test_the_image_keeps_modes_and_links_with_root_owners_and_the_epoch(tmp_path: Path) -> None:
    image = squashfs.image(_entries(tmp_path), EPOCH, tmp_path / "cache")
    files = _listing(image, tmp_path)
    assert files["/tmp"][0] == "drwxrwxrwt"
    assert files["/usr/bin/python3.11"][0] == "-rwxr-xr-x"
    assert files["/etc/passwd"][0] == "-rw-r--r--"
    assert files["/bin/sh"][0].startswith("l") and files["/bin/sh"][-1] == "/bin/busybox"
    # devtmpfs provides /dev in the live system: no device node goes into the image.
    assert "/dev/console" not in files
    assert all(row[1] == "root/root" for row in files.values())
    assert {row[3] for row in files.values()} == {"2023-11-14"}


def test_the_image_depends_on_its_content_alone(tmp_path: Path) -> None:
    first = squashfs.image(_entries(tmp_path), EPOCH, tmp_path / "one")
    second = squashfs.image(list(reversed(_entries(tmp_path))), EPOCH, tmp_path / "two")
    assert first == second
    assert squashfs.image(_entries(tmp_path), EPOCH + 1, tmp_path / "one") != first


def test_the_image_follows_the_compressed_first_stage_on_a_boundary(tmp_path: Path) -> None:
    image = squashfs.image(_entries(tmp_path), EPOCH, tmp_path / "cache")
    first = compress(b"0707010000" * 100, "zstd", 3)
    initramfs = stage1.initramfs(first, image, EPOCH)
    head, archive = stage1.split(initramfs)
    # The kernel finds the next archive only on a 4-byte boundary, after zero padding.
    assert head.rstrip(b"\0") == first and len(head) % 512 == 0
    member = tmp_path / "unpacked"
    member.mkdir()
    subprocess.run(["bsdtar", "-xf", "-", "-C", str(member)], input=archive, check=True)
    assert (member / stage1.IMAGE).read_bytes() == image
    # The image is the last member, so a short unpacking cuts it, not /init.
    assert archive.rstrip(b"\0").endswith(b"TRAILER!!!")
    assert archive.count(b"070701") == 3  # its folder, the image, the trailer


def test_implicit_folders_are_0755_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        squashfs.stage([Entry("a/b/c/file", stat.S_IFREG | 0o644, data=b"x")], tmp_path / "t")
    finally:
        os.umask(old)
    for folder in ("", "a", "a/b", "a/b/c"):
        assert (tmp_path / "t" / folder).stat().st_mode & 0o7777 == 0o755, folder


def test_the_image_is_zstd_in_128_kib_blocks(tmp_path: Path) -> None:
    # Quick to read: xz, smaller, made Python's start under emulation seconds slower.
    path = tmp_path / "image.sqfs"
    path.write_bytes(squashfs.image(_entries(tmp_path), EPOCH, tmp_path / "cache"))
    said = subprocess.run(
        ["unsquashfs", "-s", str(path)], capture_output=True, text=True, check=True
    ).stdout
    assert "Compression zstd" in said and "compression-level 19" in said
    assert "Block size 131072" in said


def test_the_roots_program_folders_are_bound_and_the_rest_copied(tmp_path: Path) -> None:
    entries = [
        *_entries(tmp_path),
        Entry("lib/modules/6.1/modules.dep", stat.S_IFREG | 0o644, data=b""),
        Entry("init", stat.S_IFREG | 0o755, data=b"#!/bin/sh\n"),
    ]
    bound, copied = stage1.root_layout(entries)
    assert bound == ["lib", "usr"]
    assert copied == ["bin", "dev", "etc", "init", "tmp"]


def test_a_program_folder_that_is_a_file_is_a_clear_error(tmp_path: Path) -> None:
    entries = [Entry("usr", stat.S_IFREG | 0o644, data=b"not a folder")]
    with pytest.raises(BuildError, match=r"/usr of the image is not a folder"):
        stage1.root_layout(entries)
