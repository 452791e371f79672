"""The boot tree of the ISO: ISOLINUX for BIOS; for UEFI the ESP image: shim, Debian's
signed systemd-boot, its entries, and the kernel, the initramfs and the empty order slot
after it; the ISO's `/live` files are the same bytes as the ESP's (one copy on the CD)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from diskformats.fat import FatImage, fat_image
from diskformats.iso import Inside, IsoFile
from diskformats.orderslot import SLOT_PATH, slot_image
from livecd.errors import BuildError
from livecd.templates import Rendered

BIOS_BOOT = "isolinux/isolinux.bin"
EFI_IMAGE = "boot/efi.img"
_SYSLINUX = "syslinux-common:usr/lib/syslinux/modules/bios"
# ISO path -> "package:path inside the package".
ISOLINUX_FILES = {
    BIOS_BOOT: "isolinux:usr/lib/ISOLINUX/isolinux.bin",
    # The core's command line, which the boot: prompt is: no menu module (menu.c32 and
    # the libcom32 and libutil it needs weigh 210 KB).
    "isolinux/ldlinux.c32": f"{_SYSLINUX}/ldlinux.c32",
}
# ESP path -> "package:path". Shim loads grubx64.efi from its own directory: Debian's
# signed systemd-boot takes that name (shim verifies it, and it asks shim to verify the
# kernel).
ESP_FILES = {
    "EFI/BOOT/BOOTX64.EFI": "shim-signed:usr/lib/shim/shimx64.efi.signed",
    "EFI/BOOT/grubx64.efi": "systemd-boot-efi-amd64-signed:"
    "usr/lib/systemd/boot/efi/systemd-bootx64.efi.signed",
}
VMLINUZ = "live/vmlinuz"
INITRD = "live/initrd.img"
# In the ESP, read by systemd-boot, and in the ISO (the same bytes), read by ISOLINUX.
SHARED = (VMLINUZ, INITRD, SLOT_PATH)
BOOT_PACKAGES = frozenset(
    spec.split(":")[0] for spec in (*ISOLINUX_FILES.values(), *ESP_FILES.values())
)


def esp_image(
    trees: Mapping[str, Path],
    rendered: Sequence[Rendered],
    *,
    vmlinuz: Path,
    initramfs: bytes,
    volume_id: int,
    epoch: int,
) -> FatImage:
    """The FAT image El Torito's EFI entry and the GPT's ESP point at: shim, systemd-boot,
    `templates/esp` rendered, the kernel, the initramfs and the order slot, empty (the
    built-in orders are in the image; a personal CD made from this one carries its own in
    the slot). Each file starts on a CD sector, for the ISO's records to point at."""
    paths = boot_loader_files(trees, ESP_FILES)
    files = {name: path.read_bytes() for name, path in paths.items()}
    files.update({r.path: r.data for r in rendered})
    files.update({VMLINUZ: vmlinuz.read_bytes(), INITRD: initramfs, SLOT_PATH: slot_image({})})
    return fat_image(files, label="LIVECD_EFI", volume_id=volume_id, mtime=epoch, cd_sectors=True)


def boot_files(
    trees: Mapping[str, Path], rendered: Sequence[Rendered], *, esp: FatImage
) -> list[IsoFile]:
    """Every file of the ISO: boot loaders, `templates/iso` rendered, the ESP, and the
    kernel, initramfs and order slot as parts of the ESP."""
    isolinux = boot_loader_files(trees, ISOLINUX_FILES)
    return [
        *(IsoFile(path, source=src) for path, src in isolinux.items()),
        *(IsoFile(r.path, data=r.data) for r in rendered),
        IsoFile(EFI_IMAGE, data=esp.data),
        *(IsoFile(path, inside=Inside(EFI_IMAGE, *esp.extents[path])) for path in SHARED),
    ]


def boot_loader_files(trees: Mapping[str, Path], wanted: Mapping[str, str]) -> dict[str, Path]:
    """The boot loaders out of their unpacked packages: {ISO or ESP path: "package:path"}
    -> the file in the package's tree."""
    found = {}
    for key, spec in wanted.items():
        pkg, _, rel = spec.partition(":")
        path = trees[pkg] / rel
        if not path.is_file():
            raise BuildError(f"package {pkg} holds no {rel}; is the package right?")
        found[key] = path
    return found
