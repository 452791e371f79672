"""Booting an ISO's kernel directly (QEMU's -kernel), with kernel options of our own.

A headless guest cannot type at a boot menu, and the live CD's menus boot at once, so the
one way to give its kernel an option the ISO does not carry (`cpushare.shell=ttyS1`, the
harness's root shell) is to boot the kernel and initramfs the ISO's ISOLINUX menu names,
with that menu's own command line plus the options. The ISO stays attached as the CD.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pycdlib
from pycdlib.pycdlibexception import PyCdlibException

from livecd.errors import UserError

ISOLINUX_CFG = "/isolinux/isolinux.cfg"
ENTRY = "live"  # the menu's default entry


@dataclass(frozen=True)
class MenuEntry:
    kernel: str
    initrds: tuple[str, ...]  # ISOLINUX loads them one after the other, as one
    append: str


def menu_entry(cfg_text: str, label: str = ENTRY) -> MenuEntry | None:
    """The kernel, initramfs files and command line of `label` in an ISOLINUX menu."""
    found: dict[str, str] = {}
    current = None
    for raw in cfg_text.splitlines():
        keyword, _, value = raw.strip().partition(" ")
        keyword = keyword.upper()
        if keyword == "LABEL":
            current = value.strip()
        elif current == label and keyword in ("KERNEL", "LINUX", "INITRD", "APPEND"):
            found[keyword] = value.strip()
    kernel = found.get("KERNEL") or found.get("LINUX")
    if not kernel or "INITRD" not in found:
        return None
    initrds = tuple(p for p in found["INITRD"].split(",") if p)
    return MenuEntry(kernel, initrds, found.get("APPEND", ""))


def direct_boot(iso: Path, workdir: Path, options: Sequence[str]) -> list[str]:
    """QEMU's options that boot `iso`'s default kernel and initramfs from files copied
    into `workdir`, with its menu's command line and `options` after it."""
    reader = pycdlib.PyCdlib()
    try:
        reader.open(str(iso))
    except PyCdlibException as exc:
        raise UserError(f"{iso}: not a readable ISO 9660 image: {exc}") from None
    try:
        entry = menu_entry(_read(reader, iso, ISOLINUX_CFG).decode(errors="replace"))
        if entry is None:
            raise UserError(f"{iso}: its ISOLINUX menu has no `{ENTRY}` entry to boot directly")
        kernel = workdir / "vmlinuz"
        kernel.write_bytes(_read(reader, iso, entry.kernel))
        initrd = workdir / "initrd"
        with initrd.open("wb") as out:
            for name in entry.initrds:
                data = _read(reader, iso, name)
                # Each archive starts 4-aligned, as the boot loader places them.
                out.write(data + b"\0" * (-len(data) % 4))
    finally:
        reader.close()
    append = " ".join([entry.append, *options]).strip()
    return ["-kernel", str(kernel), "-initrd", str(initrd), "-append", append]


def _read(reader: pycdlib.PyCdlib, iso: Path, path: str) -> bytes:
    buf = io.BytesIO()
    try:
        reader.get_file_from_iso_fp(buf, rr_path=path)
    except PyCdlibException:
        raise UserError(f"{iso}: has no {path} to boot directly") from None
    return buf.getvalue()
