"""A hybrid ISO's backup GPT never lands on its files, wherever their data ends."""

from __future__ import annotations

import io
from pathlib import Path

import pycdlib
import pytest

from diskformats.fat import make_fat_image
from diskformats.iso import IsoFile, write_iso
from diskformats.isoread import inspect_iso

ISOLINUX = Path("/usr/lib/ISOLINUX/isolinux.bin")  # Debian package isolinux
CYLINDER = 1 << 20
BACKUP_GPT = 33 * 512


def _write(out: Path, kernel: bytes) -> list[IsoFile]:
    esp = make_fat_image({"EFI/BOOT/BOOTX64.EFI": b"shim" * 1000}, label="ESP", volume_id=7,
                         mtime=0)  # fmt: skip
    files = [
        IsoFile("isolinux/isolinux.bin", source=ISOLINUX),
        IsoFile("boot/efi.img", data=esp),
        IsoFile("live/vmlinuz", data=kernel),
    ]
    write_iso(files, out, label="TEST", bios_boot="isolinux/isolinux.bin",
              efi_image="boot/efi.img", epoch=0, seed=b"s")  # fmt: skip
    return files


def _data_end(iso: Path) -> int:
    """Where the ISO's own data ends (its volume space), before the hybrid padding."""
    return int.from_bytes(iso.read_bytes()[16 * 2048 + 80 : 16 * 2048 + 84], "little") * 2048


@pytest.mark.parametrize("before_the_end", [0, 2048, 8192, BACKUP_GPT // 2048 * 2048])
def test_files_ending_just_before_a_cylinder_end_stay_whole(
    tmp_path: Path, before_the_end: int
) -> None:
    if not ISOLINUX.exists():
        pytest.fail(f"{ISOLINUX} is missing: run scripts/install-host-packages.sh")
    probe = tmp_path / "probe.iso"
    _write(probe, b"k" * 204_800)
    # The kernel is the last file: grown so that the data ends `before_the_end` bytes
    # before a cylinder's end (0: right at it), where the backup GPT used to be written.
    grow = (-_data_end(probe) - before_the_end) % CYLINDER
    kernel = bytes(range(256)) * ((204_800 + grow) // 256) + b"k" * ((204_800 + grow) % 256)
    out = tmp_path / "test.iso"
    files = _write(out, kernel)
    assert (-_data_end(out)) % CYLINDER == before_the_end
    size = out.stat().st_size
    assert size % CYLINDER == 0 and size - _data_end(out) >= BACKUP_GPT
    iso = pycdlib.PyCdlib()
    iso.open(str(out))
    try:
        for f in files[1:]:  # isolinux.bin gets its boot info table written in
            got = io.BytesIO()
            iso.get_file_from_iso_fp(got, rr_path="/" + f.path)
            assert got.getvalue() == f.open().read(), f.path
    finally:
        iso.close()
    gpt = inspect_iso(out).gpt
    assert gpt is not None and gpt.header_crc_ok and gpt.entries_crc_ok and gpt.backup == "ok"
