"""The built ISO, read back by independent tools: xorriso, bsdtar, zstd, fsck.fat, mtools."""

from __future__ import annotations

import hashlib
import json
import lzma
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

import cpushare
from livecd.build import BuildResult
from livecd.cli import main
from livecd.cmdline import MEMORY_OPTIONS
from livecd.deb import unpacked
from livecd.debian import Apt
from livecd.files import cache_home
from livecd.kernel import find_kernel
from livecd.profile import DEFAULT_PROFILE, load_profile

ORDER = DEFAULT_PROFILE.with_name("libcaca.cpu")


def xorriso(*args: str) -> str:
    proc = subprocess.run(["xorriso", *args], capture_output=True, text=True, check=True)
    return proc.stdout + proc.stderr


def extract(iso: Path, path: str, dest: Path) -> Path:
    xorriso("-osirrox", "on", "-indev", str(iso), "-extract", path, str(dest))
    return dest


@pytest.fixture(scope="module")
def trees(default_build: BuildResult) -> dict[str, Path]:
    apt = Apt(cache_home(), "bookworm")
    return {p.name: unpacked(apt.fetch(p), cache_home()) for p in default_build.packages}


@pytest.fixture(scope="module")
def initramfs(
    initramfs_parts: tuple[bytes, bytes], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The first stage's cpio, decompressed."""
    cpio = tmp_path_factory.mktemp("initramfs") / "initrd.cpio"
    cpio.write_bytes(initramfs_parts[0])
    return cpio


def test_the_iso_has_both_boot_entries_and_a_hybrid_mbr(iso: Path) -> None:
    report = xorriso(
        "-indev", str(iso), "-report_el_torito", "plain", "-report_system_area", "plain"
    )
    assert "El Torito boot img :   1  BIOS  y   none" in report
    assert "El Torito boot img :   2  UEFI  y   none" in report
    assert "/isolinux/isolinux.bin" in report and "/boot/efi.img" in report
    assert "System area summary: MBR isohybrid cyl-align-on GPT" in report
    # The ESP as an EFI System partition of the MBR, for firmware booting from USB.
    assert re.search(r"MBR partition\s+:\s+2\s+0x00\s+0xef", report)
    assert re.search(r"MBR partition path\s+:\s+2\s+/boot/efi.img", report)


def test_the_iso_tree_holds_kernel_initramfs_and_both_menus(iso: Path) -> None:
    listing = xorriso("-indev", str(iso), "-find", "/", "-type", "f")
    for path in (
        "/live/vmlinuz",
        "/live/initrd.img",
        "/isolinux/isolinux.bin",
        "/isolinux/ldlinux.c32",
        "/isolinux/isolinux.cfg",
        "/boot/efi.img",
        "/manifest.json",
    ):
        assert f"'{path}'" in listing
    assert "grub" not in listing
    # Plain ISOLINUX: its boot: prompt needs no menu module.
    assert "/isolinux/menu.c32" not in listing and "libcom32" not in listing


def esp_file(esp: Path, name: str, dest: Path) -> Path:
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    subprocess.run(["mcopy", "-i", str(esp), f"::{name}", str(dest)], check=True, env=env)
    return dest


def systemd_boot_entries(iso: Path, tmp_path: Path) -> str:
    """systemd-boot's entries in the ESP, read by mtools, one after the other."""
    esp = extract(iso, "/boot/efi.img", tmp_path / "efi.img")
    names = ("live", "serial", "safe")
    return "".join(
        esp_file(esp, f"loader/entries/{n}.conf", tmp_path / f"{n}.conf").read_text() for n in names
    )


def test_menus_have_the_three_entries_and_the_serial_console(iso: Path, tmp_path: Path) -> None:
    entries = systemd_boot_entries(iso, tmp_path)
    isolinux = extract(iso, "/isolinux/isolinux.cfg", tmp_path / "i.cfg").read_text()
    assert len(re.findall(r"^title ", entries, re.M)) == 3
    assert len(re.findall(r"^LABEL ", isolinux, re.M)) == 3 and "SERIAL 0 115200" in isolinux
    # Both initramfs files, the slot second, in every systemd-boot entry.
    assert entries.count("initrd /live/initrd.img\ninitrd /live/order.img\n") == 3
    for cfg in (entries, isolinux):
        assert "console=ttyS0,115200" in cfg and "nomodeset" in cfg
        # Every entry gives memory back to a small machine (livecd.cmdline).
        lines = [ln for ln in cfg.splitlines() if ln.strip().startswith(("options ", "APPEND "))]
        assert len(lines) == 3
        assert all(option in ln.split() for ln in lines for option in MEMORY_OPTIONS)


def test_the_esp_and_the_iso_share_kernel_initramfs_and_slot(iso: Path, tmp_path: Path) -> None:
    """Each /live file is stored once: the ISO's record points into the ESP's FAT image,
    at the bytes of the FAT's file of that name."""
    report = xorriso("-indev", str(iso), "-find", "/", "-exec", "report_lba")
    extents = {
        path: (int(start), int(blocks))
        for start, blocks, path in re.findall(
            r"File data lba:\s+\d+ ,\s+(\d+) ,\s+(\d+) ,\s+\d+ ,\s+'([^']+)'", report
        )
    }
    esp_start, esp_blocks = extents["/boot/efi.img"]
    esp = extract(iso, "/boot/efi.img", tmp_path / "efi.img")
    for name in ("vmlinuz", "initrd.img", "order.img"):
        start, blocks = extents[f"/live/{name}"]
        assert esp_start < start and start + blocks <= esp_start + esp_blocks
        in_iso = extract(iso, f"/live/{name}", tmp_path / f"iso-{name}").read_bytes()
        assert esp_file(esp, f"live/{name}", tmp_path / name).read_bytes() == in_iso


def test_the_kernel_is_debians_signed_one(
    iso: Path, tmp_path: Path, trees: dict[str, Path], default_build: BuildResult
) -> None:
    vmlinuz = extract(iso, "/live/vmlinuz", tmp_path / "vmlinuz").read_bytes()
    release = default_build.kernel_release
    shipped = trees[default_build.packages[0].name] / "boot" / f"vmlinuz-{release}"
    assert vmlinuz == shipped.read_bytes()


def test_the_initramfs_holds_the_live_system(initramfs: Path, default_build: BuildResult) -> None:
    listing = subprocess.run(
        ["bsdtar", "-tvf", str(initramfs)], capture_output=True, text=True, check=True
    ).stdout
    lines = {
        ln.split()[-1] if " -> " not in ln else ln.split()[-3]: ln for ln in listing.splitlines()
    }
    assert lines["init"].startswith("-rwxr-xr-x")
    assert lines["bin/busybox"].startswith("-rwxr-xr-x")
    assert lines["sbin/init"].startswith("l") and "-> /bin/busybox" in lines["sbin/init"]
    assert lines["dev/console"].startswith("c") and lines["dev/null"].startswith("c")
    # Root's, but for the jobs identity's file (test_jobs_run_as_a_user_of_their_own).
    owned = [ln for ln in listing.splitlines() if not ln.endswith(" usr/lib/cpushare/job-identity")]
    assert all(" root " in ln or " 0 " in ln for ln in owned)
    release = default_build.kernel_release
    for name in ("modules.dep", "modules.alias", "modules.builtin"):
        assert f"lib/modules/{release}/{name}" in lines
    assert any(p.endswith("/squashfs.ko") for p in lines)
    assert "etc/inittab" in lines


def test_the_image_holds_the_live_system(live_root: Path, default_build: BuildResult) -> None:
    assert (live_root / "init").stat().st_mode & 0o777 == 0o755
    assert (live_root / "etc/init.d/rcS").is_file()
    assert (live_root / "usr/bin/python3.11").is_file()
    assert (live_root / "tmp").stat().st_mode & 0o7777 == 0o1777
    # busybox's links, not busybox: the first stage's is the one copy (its /init hands it on).
    assert (live_root / "bin/sh").is_symlink() and not (live_root / "bin/busybox").exists()
    release = default_build.kernel_release
    assert list((live_root / "lib/modules" / release).rglob("e1000.ko"))


@pytest.mark.parametrize("where", ["first stage", "image"])
def test_modules_are_byte_for_byte_the_signed_ones(
    initramfs: Path,
    live_root: Path,
    tmp_path: Path,
    trees: dict[str, Path],
    default_build: BuildResult,
    where: str,
) -> None:
    if where == "image":
        tree = live_root
    else:
        subprocess.run(["bsdtar", "-xf", str(initramfs), "-C", str(tmp_path)], check=True)
        tree = tmp_path
    release = default_build.kernel_release
    root = tree / "lib" / "modules" / release
    kos = list(root.rglob("*.ko"))
    assert len(kos) >= (20 if where == "image" else 3)
    # Debian 13 ships them xz-compressed: each is then the plain module inside, signature
    # and all.
    shipped = find_kernel(trees[default_build.packages[0].name]).modules
    for ko in kos:
        plain = shipped / ko.relative_to(root)
        if plain.exists():
            assert ko.read_bytes() == plain.read_bytes(), ko
        else:
            packed = plain.with_suffix(".ko.xz")
            assert ko.read_bytes() == lzma.decompress(packed.read_bytes()), ko
        assert ko.read_bytes().endswith(b"~Module signature appended~\n")


def test_the_esp_is_a_clean_fat_with_shim_and_systemd_boot(
    iso: Path, tmp_path: Path, trees: dict[str, Path]
) -> None:
    esp = extract(iso, "/boot/efi.img", tmp_path / "efi.img")
    fsck = subprocess.run(["fsck.fat", "-n", str(esp)], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    for name, shipped in (
        ("BOOTX64.EFI", trees["shim-signed"] / "usr/lib/shim/shimx64.efi.signed"),
        (
            "grubx64.efi",
            trees["systemd-boot-efi-amd64-signed"]
            / "usr/lib/systemd/boot/efi/systemd-bootx64.efi.signed",
        ),
    ):
        out = tmp_path / name
        subprocess.run(
            ["mcopy", "-i", str(esp), f"::EFI/BOOT/{name}", str(out)], check=True, env=env
        )
        assert out.read_bytes() == shipped.read_bytes()


def test_manifests_name_every_input_and_the_iso(default_build: BuildResult, tmp_path: Path) -> None:
    iso = default_build.iso
    outside = json.loads(iso.with_name(iso.name + ".manifest.json").read_text())
    inside = json.loads(extract(iso, "/manifest.json", tmp_path / "m.json").read_text())
    assert outside["iso"]["sha256"] == hashlib.sha256(iso.read_bytes()).hexdigest()
    assert inside["packages"] == outside["packages"]
    names = {p["name"] for p in inside["packages"]}
    assert {"busybox-static", "shim-signed", "systemd-boot-efi-amd64-signed"} <= names
    assert all(len(p["sha256"]) == 64 for p in inside["packages"])


def test_no_partial_file_is_left_next_to_the_iso(default_build: BuildResult) -> None:
    assert [p.name for p in default_build.iso.parent.iterdir() if p.name.endswith(".part")] == []
    assert stat.S_IMODE(default_build.iso.stat().st_mode) == 0o644


def test_command_line_settings_reach_the_image(
    default_build: BuildResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Options made from the settings table, through a real build: an order relative to the
    # current folder, a volume label, a compression and its level, a serial console.
    shutil.copy(ORDER, tmp_path / "mine.cpu")
    monkeypatch.chdir(tmp_path)
    args = ["build", "--order", "mine.cpu", "--volume-label", "MINE", "--serial", "ttyS1",
            "--compression", "gzip", "--compression-level", "1", "--timeout", "0",
            "-o", "out/t.iso"]  # fmt: skip
    (tmp_path / "out").mkdir()
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "out" / "t.iso.manifest.json").read_text())
    settings = manifest["profile"]["settings"]
    assert settings["orders"] == ["mine.cpu"] and settings["output"] == load_profile().output
    assert (settings["volume_label"], settings["serial"]) == ("MINE", "ttyS1")
    assert (settings["compression"], settings["compression_level"]) == ("gzip", 1)
    assert [o["name"] for o in manifest["orders"]] == ["mine.cpu"]
    assert "Volume id    : 'MINE'" in xorriso("-indev", "out/t.iso", "-pvd_info")
    initrd = extract(tmp_path / "out" / "t.iso", "/live/initrd.img", tmp_path / "initrd.img")
    assert initrd.read_bytes()[:2] == b"\x1f\x8b"
    assert "console=ttyS1" in systemd_boot_entries(tmp_path / "out" / "t.iso", tmp_path)


def test_the_image_holds_exactly_the_guest_package(live_root: Path) -> None:
    """Every module of `cpushare`, and nothing of the host's packages (market, builder)."""
    stdlib = live_root / "usr/lib/python3.11"
    guest = Path(cpushare.__file__).resolve().parent
    package = stdlib / "cpushare"
    shipped = {p.relative_to(package).as_posix() for p in package.rglob("*.py")}
    assert shipped == {p.relative_to(guest).as_posix() for p in guest.rglob("*.py")}
    assert [p.name for p in stdlib.iterdir() if p.name.startswith(("market", "livecd"))] == []


def test_jobs_run_as_a_user_of_their_own(live_root: Path) -> None:
    """The loader is setuid root for the sellers' group only; the identity file belongs to
    cpushare-job, the user the loader runs every seller's job as."""

    def table(name: str) -> dict[str, list[str]]:
        rows = (ln.split(":") for ln in (live_root / "etc" / name).read_text().splitlines())
        return {f[0]: f for f in rows}

    users, groups = table("passwd"), table("group")
    loader = (live_root / "usr/lib/cpushare/jail-loader").stat()
    assert stat.filemode(loader.st_mode) == "-rwsr-x---"
    assert (loader.st_uid, loader.st_gid) == (0, int(groups["cpushare"][2]))
    identity = (live_root / "usr/lib/cpushare/job-identity").stat()
    job_user = users["cpushare-job"]
    assert (identity.st_uid, identity.st_gid) == (int(job_user[2]), int(job_user[3]))
    assert job_user[3] == groups["cpushare-job"][2]
    assert job_user[2] not in ("0", users["cpushare"][2])
    assert job_user[3] not in ("0", users["cpushare"][3])
