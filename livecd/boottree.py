"""The boot tree of the ISO: ISOLINUX for BIOS, the ESP image (shim + signed GRUB) for
UEFI, the kernel, the initramfs and the empty order slot after it, GRUB's config and
`/.disk/info` by which the signed GRUB finds the CD."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from diskformats.fat import make_fat_image
from diskformats.iso import IsoFile
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
# ESP path -> "package:path". Shim loads grubx64.efi from its own directory.
ESP_FILES = {
    "EFI/BOOT/BOOTX64.EFI": "shim-signed:usr/lib/shim/shimx64.efi.signed",
    "EFI/BOOT/grubx64.efi": "grub-efi-amd64-signed:"
    "usr/lib/grub/x86_64-efi-signed/gcdx64.efi.signed",
}
BOOT_PACKAGES = frozenset(
    spec.split(":")[0] for spec in (*ISOLINUX_FILES.values(), *ESP_FILES.values())
)


def esp_image(trees: Mapping[str, Path], *, volume_id: int, epoch: int) -> bytes:
    """The FAT image El Torito's EFI entry and the GPT's ESP point at."""
    paths = boot_loader_files(trees, ESP_FILES)
    return make_fat_image(
        {name: path.read_bytes() for name, path in paths.items()},
        label="LIVECD_EFI",
        volume_id=volume_id,
        mtime=epoch,
    )


def boot_files(
    trees: Mapping[str, Path],
    rendered: Sequence[Rendered],
    *,
    vmlinuz: Path,
    initramfs: bytes,
    esp: bytes,
) -> list[IsoFile]:
    """Every file of the ISO: boot loaders, `templates/iso` rendered, kernel, initramfs,
    and the order slot, empty: the built-in orders are in the image; a personal CD made
    from this one carries its own in the slot."""
    isolinux = boot_loader_files(trees, ISOLINUX_FILES)
    return [
        *(IsoFile(path, source=src) for path, src in isolinux.items()),
        *(IsoFile(r.path, data=r.data) for r in rendered),
        IsoFile(EFI_IMAGE, data=esp),
        IsoFile("live/vmlinuz", source=vmlinuz),
        IsoFile("live/initrd.img", data=initramfs),
        IsoFile(SLOT_PATH, data=slot_image({})),
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
