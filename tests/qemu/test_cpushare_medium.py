"""The CPUSHARE medium is a FAT volume that the system's own tools read."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from livecd.qemu.medium import make_medium


def test_the_medium_is_a_fat_volume_labelled_cpushare(tmp_path: Path) -> None:
    order = b"format = 1\n[market]\nurl = 'https://10.0.2.100:8443'\n"
    medium = make_medium({"volunteer.cpu": order}, tmp_path / "medium.img")
    label = subprocess.run(
        ["blkid", "-o", "value", "-s", "LABEL", str(medium)], capture_output=True, text=True
    )
    assert label.stdout.strip() == "CPUSHARE"
    assert subprocess.run(["fsck.fat", "-n", str(medium)], capture_output=True).returncode == 0
    copy = subprocess.run(
        ["mtype", "-i", str(medium), "::volunteer.cpu"],
        capture_output=True,
        env={**os.environ, "MTOOLS_SKIP_CHECK": "1"},
    )
    assert copy.stdout == order


def test_the_medium_is_the_same_bytes_every_time(tmp_path: Path) -> None:
    files = {"volunteer.cpu": b"order"}
    first = make_medium(files, tmp_path / "a.img").read_bytes()
    assert make_medium(files, tmp_path / "b.img").read_bytes() == first
