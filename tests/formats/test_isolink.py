"""Files of the ISO stored once, inside the ESP's FAT image: every view of the ISO
(ISO 9660, Rock Ridge, Joliet) reads the FAT's bytes of that file."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pycdlib
import pytest
from click.testing import CliRunner

from diskformats.fat import fat_image
from diskformats.iso import Inside, IsoFile, iso9660_name, write_iso
from diskformats.isolink import Link, link_files
from livecd.cli import main

ISOLINUX = Path("/usr/lib/ISOLINUX/isolinux.bin")  # Debian package isolinux
EPOCH = 1_700_000_000
SHARED = {"live/vmlinuz": b"kernel" * 50_000, "live/initrd.img": b"initramfs" * 60_000}


def shared_iso(out: Path) -> int:
    """Write the ISO; the size of its ESP."""
    esp = fat_image({"EFI/BOOT/BOOTX64.EFI": b"shim" * 1000, **SHARED}, label="ESP",
                    volume_id=7, mtime=EPOCH, cd_sectors=True)  # fmt: skip
    files = [
        IsoFile("isolinux/isolinux.bin", source=ISOLINUX),
        IsoFile("boot/efi.img", data=esp.data),
        *(IsoFile(path, inside=Inside("boot/efi.img", *esp.extents[path])) for path in SHARED),
    ]
    write_iso(files, out, label="TEST", bios_boot="isolinux/isolinux.bin",
              efi_image="boot/efi.img", epoch=EPOCH, seed=b"s")  # fmt: skip
    return len(esp.data)


def read(iso: pycdlib.PyCdlib, **path: str) -> bytes:
    out = io.BytesIO()
    iso.get_file_from_iso_fp(out, **path)
    return out.getvalue()


def test_every_view_reads_the_esps_bytes(tmp_path: Path) -> None:
    path = tmp_path / "t.iso"
    esp_size = shared_iso(path)
    iso = pycdlib.PyCdlib()
    iso.open(str(path))
    try:
        esp = iso.get_record(iso_path="/BOOT/EFI.IMG;1")
        esp_start = esp.extent_location()
        esp_end = esp_start + esp.get_data_length() // 2048
        for name, data in SHARED.items():
            iso_name = "/LIVE/" + iso9660_name(name.split("/")[1], False)
            views = [{"iso_path": iso_name}, {"rr_path": "/" + name}, {"joliet_path": "/" + name}]
            for view in views:
                assert read(iso, **view) == data, view
                assert esp_start < iso.get_record(**view).extent_location() < esp_end, view
    finally:
        iso.close()
    # The ISO holds each file once: its volume is smaller than the ESP and another copy.
    blocks = int.from_bytes(path.read_bytes()[16 * 2048 + 80 : 16 * 2048 + 84], "little")
    assert blocks * 2048 < esp_size + sum(len(d) for d in SHARED.values())
    report = ["xorriso", "-indev", str(path), "-find", "/live", "-exec", "report_lba"]
    listing = subprocess.run(report, capture_output=True, text=True, check=True)
    assert listing.stdout.count("File data lba") == 2


def test_a_link_to_a_file_the_iso_lacks_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.iso"
    shared_iso(path)
    with path.open("r+b") as fp, pytest.raises(ValueError, match="no directory record for"):
        link_files(fp, [Link("/LIVE/NONE.;1", "/live/none", 30, 1)])


def test_inspect_counts_the_shared_files_once(tmp_path: Path) -> None:
    path = tmp_path / "t.iso"
    shared_iso(path)
    result = CliRunner().invoke(main, ["inspect", str(path)])
    assert result.exit_code == 0, result.output
    inside = sum(len(d) for d in SHARED.values())
    assert f"({inside / 1024:.1f} KiB of them inside another file: stored once)" in result.stdout
