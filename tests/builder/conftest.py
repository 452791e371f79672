"""Fixtures of the builder tests."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import pytest

from livecd.stage1 import IMAGE, split


@pytest.fixture(scope="session")
def initramfs_parts(iso: Path) -> tuple[bytes, bytes]:
    """The default ISO's initramfs: its first stage's archive, decompressed, and the
    uncompressed archive holding the squashfs image. zstd's command line decodes the frame
    and then complains about the zero padding after it (which the kernel skips), so its
    output is checked to be a whole archive instead of its exit status."""
    with tempfile.TemporaryDirectory() as tmp:
        dest = Path(tmp) / "initrd.img"
        subprocess.run(
            ["xorriso", "-osirrox", "on", "-indev", str(iso), "-extract", "/live/initrd.img",
             str(dest)],
            capture_output=True, check=True,
        )  # fmt: skip
        first, archive = split(dest.read_bytes())
    cpio = subprocess.run(["zstd", "-q", "-d", "-c"], input=first, capture_output=True).stdout
    assert b"TRAILER!!!" in cpio[-1024:], "the first stage is not a whole zstd-compressed cpio"
    return cpio, archive


@pytest.fixture(scope="session")
def live_root(
    initramfs_parts: tuple[bytes, bytes], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The live system: the squashfs image, unpacked by squashfs-tools."""
    work = tmp_path_factory.mktemp("live")
    subprocess.run(["bsdtar", "-xf", "-", "-C", str(work)], input=initramfs_parts[1], check=True)
    root = work / "root"
    subprocess.run(["unsquashfs", "-q", "-n", "-d", str(root), str(work / IMAGE)], check=True)
    return root
