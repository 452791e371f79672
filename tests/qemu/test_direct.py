"""Booting an ISO's kernel directly with options of the harness's own (its root shell),
read from a real ISO 9660 image without booting it."""

from __future__ import annotations

import io
import itertools
from pathlib import Path

import pycdlib
import pytest

from livecd.errors import UserError
from livecd.qemu.direct import direct_boot, menu_entry
from livecd.qemu.machine import SHELL_OPTION, GuestConfig, qemu_argv

MENU = """\
SERIAL 0 115200
DEFAULT live
LABEL live
    KERNEL /live/vmlinuz
    INITRD /live/initrd.img,/live/order.img
    APPEND quiet console=ttyS0,115200
LABEL safe
    KERNEL /live/other
    INITRD /live/initrd.img
    APPEND nomodeset
"""


def _iso(path: Path, files: dict[str, bytes]) -> Path:
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, rock_ridge="1.09")
    made: set[str] = set()
    for name, data in files.items():
        *dirs, leaf = name.split("/")
        for depth in range(1, len(dirs) + 1):
            folder = "/".join(dirs[:depth])
            if folder not in made:
                made.add(folder)
                iso.add_directory("/" + folder.upper(), rr_name=dirs[depth - 1])
        iso_name = "/" + "/".join([*(d.upper() for d in dirs), leaf.upper().replace("-", "_")])
        iso.add_fp(io.BytesIO(data), len(data), iso_name + ";1", rr_name=leaf)
    iso.write(str(path))
    iso.close()
    return path


def _values(argv: list[str], option: str) -> list[str]:
    return [value for flag, value in itertools.pairwise(argv) if flag == option]


def test_the_menus_default_entry_is_read_with_every_initramfs() -> None:
    entry = menu_entry(MENU)
    assert entry is not None
    assert entry.kernel == "/live/vmlinuz"
    assert entry.initrds == ("/live/initrd.img", "/live/order.img")
    assert entry.append == "quiet console=ttyS0,115200"
    assert menu_entry("LABEL other\n  KERNEL /k\n") is None


def test_the_shell_boots_the_isos_kernel_with_its_command_line_and_the_option(
    tmp_path: Path,
) -> None:
    iso = _iso(tmp_path / "live.iso", {
        "isolinux/isolinux.cfg": MENU.encode(),
        "live/vmlinuz": b"kernel",
        "live/initrd.img": b"first",  # 5 bytes: the next archive starts 4-aligned
        "live/order.img": b"order",
    })  # fmt: skip
    workdir = tmp_path / "w"
    workdir.mkdir()
    argv = qemu_argv(GuestConfig(iso=iso, shell=True), workdir)
    assert Path(_values(argv, "-kernel")[0]).read_bytes() == b"kernel"
    assert Path(_values(argv, "-initrd")[0]).read_bytes() == b"first\0\0\0order\0\0\0"
    assert _values(argv, "-append") == [f"quiet console=ttyS0,115200 {SHELL_OPTION}"]
    # QEMU boots the kernel with boot index 0: the CD comes after it.
    assert "ide-cd,drive=live,bootindex=1" in _values(argv, "-device")


def test_without_the_shell_the_iso_boots_through_its_own_menu(tmp_path: Path) -> None:
    iso = _iso(tmp_path / "live.iso", {"isolinux/isolinux.cfg": MENU.encode()})
    argv = qemu_argv(GuestConfig(iso=iso, ttys1=True), tmp_path)
    assert not _values(argv, "-kernel") and not _values(argv, "-append")
    assert "ide-cd,drive=live,bootindex=0" in _values(argv, "-device")
    assert _values(argv, "-serial") == ["stdio", "chardev:shell"]


@pytest.mark.parametrize(
    ("files", "complaint"),
    [
        ({"live/vmlinuz": b"k"}, "has no /isolinux/isolinux.cfg"),
        ({"isolinux/isolinux.cfg": b"LABEL x\n"}, "no `live` entry"),
        ({"isolinux/isolinux.cfg": MENU.encode()}, "has no /live/vmlinuz"),
    ],
)
def test_an_iso_without_what_the_menu_names_is_one_clear_error(
    tmp_path: Path, files: dict[str, bytes], complaint: str
) -> None:
    iso = _iso(tmp_path / "live.iso", files)
    with pytest.raises(UserError, match=complaint):
        direct_boot(iso, tmp_path, [SHELL_OPTION])


def test_secure_boot_refuses_the_shell(tmp_path: Path) -> None:
    iso = _iso(tmp_path / "live.iso", {"isolinux/isolinux.cfg": MENU.encode()})
    cfg = GuestConfig(iso=iso, firmware="uefi", secure_boot=True, shell=True)
    with pytest.raises(UserError, match="Secure Boot"):
        qemu_argv(cfg, tmp_path)
