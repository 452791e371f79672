"""The live CD's order slot: a personal CD is the base ISO with only the slot's extent
rewritten, the same bytes for the same order, and the slot reads back (with bsdcpio) as
the orders under /etc/cpushare."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from diskformats.errors import UserError
from diskformats.fat import fat_image
from diskformats.iso import Inside, IsoFile, write_iso
from diskformats.isoread import inspect_iso
from diskformats.orderslot import SLOT_PATH, SLOT_SIZE, find_slot, patched, slot_image

ISOLINUX = Path("/usr/lib/ISOLINUX/isolinux.bin")  # Debian package isolinux
EPOCH = 1_700_000_000
ORDER = '[market]\nurl = "https://market.example:8443"\n'


def small_base(out: Path, slot: bytes | None = None) -> Path:
    """A small hybrid ISO as `livecd build` lays one out: kernel, initramfs and the order
    slot in the ESP, the ISO's records pointing there; unless `slot` is b"" (an ISO from
    before slots) or another file in its place (then a file of the ISO's own)."""
    shared = {"live/vmlinuz": b"kernel" * 999, "live/initrd.img": b"initramfs" * 999}
    if slot is None:
        shared[SLOT_PATH] = slot_image({})
    esp = fat_image({"EFI/BOOT/BOOTX64.EFI": b"shim" * 1000, **shared}, label="ESP",
                    volume_id=7, mtime=EPOCH, cd_sectors=True)  # fmt: skip
    files = [
        IsoFile("isolinux/isolinux.bin", source=ISOLINUX),
        IsoFile("boot/efi.img", data=esp.data),
        *(IsoFile(path, inside=Inside("boot/efi.img", *esp.extents[path])) for path in shared),
        IsoFile("manifest.json", data=b"{}\n"),
    ]
    if slot:
        files.append(IsoFile(SLOT_PATH, data=slot))
    write_iso(files, out, label="TEST", bios_boot="isolinux/isolinux.bin",
              efi_image="boot/efi.img", epoch=EPOCH, seed=b"s")  # fmt: skip
    return out


def esp_slot(iso: Path, tmp_path: Path) -> bytes:
    """The slot as the FAT's readers see it (mtools), in the ISO's ESP (xorriso)."""
    esp, out = tmp_path / "esp.img", tmp_path / "slot.img"
    subprocess.run(["xorriso", "-osirrox", "on", "-indev", str(iso), "-extract",
                    "/boot/efi.img", str(esp)], check=True, capture_output=True)  # fmt: skip
    subprocess.run(["mcopy", "-i", str(esp), f"::{SLOT_PATH}", str(out)], check=True,
                   env={"MTOOLS_SKIP_CHECK": "1"})  # fmt: skip
    return out.read_bytes()


def personal(base: Path, orders: dict[str, str]) -> bytes:
    return b"".join(patched(base, find_slot(base), slot_image(orders), chunk=4096))


def test_a_personal_cd_differs_from_its_base_in_the_slot_only(tmp_path: Path) -> None:
    base = small_base(tmp_path / "base.iso")
    before = base.read_bytes()
    after = personal(base, {"o-1.cpu": ORDER})
    offset = find_slot(base)
    assert len(after) == len(before) and offset % 2048 == 0
    assert after[:offset] == before[:offset]
    assert after[offset + SLOT_SIZE :] == before[offset + SLOT_SIZE :]
    assert after[offset : offset + SLOT_SIZE] == slot_image({"o-1.cpu": ORDER})
    assert after[offset : offset + SLOT_SIZE] != before[offset : offset + SLOT_SIZE]
    # Still the same ISO to a reader: boot entries, GPT and the file at the same place.
    written = tmp_path / "personal.iso"
    written.write_bytes(after)
    report, base_report = inspect_iso(written), inspect_iso(base)
    assert report.boot_entries == base_report.boot_entries and report.gpt == base_report.gpt
    assert report.files == base_report.files
    # The ESP's file is the same bytes: systemd-boot loads the personal slot too.
    assert esp_slot(base, tmp_path) == bytes(SLOT_SIZE)
    assert esp_slot(written, tmp_path) == slot_image({"o-1.cpu": ORDER})


def test_the_same_order_gives_the_same_bytes_and_another_order_others(tmp_path: Path) -> None:
    base = small_base(tmp_path / "base.iso")
    one = personal(base, {"o-1.cpu": ORDER})
    assert personal(base, {"o-1.cpu": ORDER}) == one
    assert personal(base, {"o-1.cpu": ORDER + "# other\n"}) != one


def test_the_slot_holds_the_orders_in_etc_cpushare(tmp_path: Path) -> None:
    listing = subprocess.run(
        ["bsdcpio", "-i", "-t", "-v"],
        input=slot_image({"o-1.cpu": ORDER, "b.cpu": "x"}),
        capture_output=True,
        check=True,
    ).stdout.decode()
    names = [line.split()[-1] for line in listing.splitlines()]
    assert names == ["etc", "etc/cpushare", "etc/cpushare/b.cpu", "etc/cpushare/o-1.cpu"]
    extracted = tmp_path / "root"
    extracted.mkdir()
    subprocess.run(
        ["bsdcpio", "-i", "-d"], input=slot_image({"o-1.cpu": ORDER}), cwd=extracted, check=True
    )
    assert (extracted / "etc/cpushare/o-1.cpu").read_text() == ORDER


def test_the_stock_slot_is_zeros_which_the_kernel_skips() -> None:
    assert slot_image({}) == bytes(SLOT_SIZE)


def test_a_base_without_a_slot_is_refused_in_one_line(tmp_path: Path) -> None:
    base = small_base(tmp_path / "old.iso", slot=b"")
    with pytest.raises(UserError, match=r"has no order slot \(/live/order.img\): build it again"):
        find_slot(base)


@pytest.mark.parametrize(
    ("slot", "message"),
    [
        (b"\0" * 4096, "is 4096 bytes, not the order slot's 65536"),
        (b"MZ" + bytes(SLOT_SIZE - 2), "is not an order slot"),
    ],
)
def test_a_file_that_is_no_slot_is_refused(tmp_path: Path, slot: bytes, message: str) -> None:
    base = small_base(tmp_path / "odd.iso", slot=slot)
    with pytest.raises(UserError, match=message):
        find_slot(base)


def test_what_is_not_an_iso_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.iso"
    junk.write_bytes(b"x" * 100_000)
    with pytest.raises(UserError, match="not a readable ISO 9660 image"):
        find_slot(junk)
    with pytest.raises(UserError, match="cannot read it"):
        find_slot(tmp_path / "missing.iso")


def test_orders_that_do_not_fit_or_have_bad_names_are_refused() -> None:
    with pytest.raises(UserError, match="more than the CD's order slot holds"):
        slot_image({"big.cpu": "x" * SLOT_SIZE})
    with pytest.raises(UserError, match=r"is not NAME\.cpu"):
        slot_image({"../etc/passwd": "x"})
