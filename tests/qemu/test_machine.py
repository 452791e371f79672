"""The QEMU command line for each machine, checked without booting it."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from livecd.errors import UserError
from livecd.qemu.machine import (
    OVMF_DIR,
    Forward,
    GuestConfig,
    Media,
    counting_instructions,
    qemu_argv,
)


@pytest.fixture
def iso(tmp_path: Path) -> Path:
    path = tmp_path / "live.iso"
    path.write_bytes(b"\0" * 2048)
    return path


def _values(argv: list[str], option: str) -> list[str]:
    """Every value given to `option` (e.g. all the `-device` arguments), in order."""
    return [value for flag, value in itertools.pairwise(argv) if flag == option]


def _argv(cfg: GuestConfig, workdir: Path) -> list[str]:
    workdir.mkdir(exist_ok=True)
    return qemu_argv(cfg, workdir)


def test_bios_is_the_pc_machine_without_firmware_files(iso: Path, tmp_path: Path) -> None:
    argv = _argv(GuestConfig(iso=iso), tmp_path / "w")
    assert _values(argv, "-machine") == ["pc"]
    assert not any("pflash" in d for d in _values(argv, "-drive"))
    assert not (tmp_path / "w" / "OVMF_VARS.fd").exists()


def test_uefi_secure_boot_uses_smm_enforcing_flash_and_microsofts_keys(
    iso: Path, tmp_path: Path
) -> None:
    argv = _argv(GuestConfig(iso=iso, firmware="uefi", secure_boot=True), tmp_path / "w")
    assert _values(argv, "-machine") == ["q35,smm=on"]
    assert "driver=cfi.pflash01,property=secure,value=on" in _values(argv, "-global")
    flash = [d for d in _values(argv, "-drive") if d.startswith("if=pflash")]
    vars_copy = tmp_path / "w" / "OVMF_VARS.fd"
    assert flash == [
        f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_DIR / 'OVMF_CODE_4M.ms.fd'}",
        f"if=pflash,format=raw,unit=1,file={vars_copy}",
    ]
    # The guest writes its variables into a copy, never into the system's template.
    assert vars_copy.read_bytes() == (OVMF_DIR / "OVMF_VARS_4M.ms.fd").read_bytes()


def test_uefi_without_secure_boot_uses_plain_ovmf(iso: Path, tmp_path: Path) -> None:
    argv = _argv(GuestConfig(iso=iso, firmware="uefi"), tmp_path / "w")
    assert _values(argv, "-machine") == ["q35"]
    assert not _values(argv, "-global")
    assert f"file={OVMF_DIR / 'OVMF_CODE_4M.fd'}" in _values(argv, "-drive")[0]


def test_secure_boot_without_uefi_is_refused(iso: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="needs UEFI"):
        _argv(GuestConfig(iso=iso, secure_boot=True), tmp_path / "w")


def test_cdrom_boots_the_iso_from_an_ide_cd(iso: Path, tmp_path: Path) -> None:
    argv = _argv(GuestConfig(iso=iso), tmp_path / "w")
    assert f"file={iso},media=cdrom,readonly=on,if=none,id=live" in _values(argv, "-drive")
    assert "ide-cd,drive=live,bootindex=0" in _values(argv, "-device")
    assert not any(d.startswith("usb-storage") for d in _values(argv, "-device"))


def test_usb_boots_the_iso_from_a_removable_read_only_usb_disk(iso: Path, tmp_path: Path) -> None:
    argv = _argv(GuestConfig(iso=iso, media="usb"), tmp_path / "w")
    assert f"file={iso},format=raw,readonly=on,if=none,id=live" in _values(argv, "-drive")
    devices = _values(argv, "-device")
    assert "usb-storage,bus=xhci.0,drive=live,removable=on,bootindex=0" in devices
    assert not any(d.startswith("ide-cd") for d in devices)


@pytest.mark.parametrize("media", ["cdrom", "usb"])
def test_sticks_get_one_usb_controller_and_disks_a_virtio_drive(
    iso: Path, tmp_path: Path, media: Media
) -> None:
    stick, disk = tmp_path / "stick.img", tmp_path / "disk.img"
    cfg = GuestConfig(iso=iso, media=media, sticks=(stick,), drives=(disk,))
    argv = _argv(cfg, tmp_path / "w")
    devices = _values(argv, "-device")
    assert devices.count("qemu-xhci,id=xhci") == 1
    assert "usb-storage,bus=xhci.0,drive=stick0,removable=on" in devices
    assert "virtio-blk-pci,drive=disk0" in devices
    drives = _values(argv, "-drive")
    assert f"file={stick},format=raw,if=none,id=stick0" in drives
    assert f"file={disk},format=raw,if=none,id=disk0" in drives


@pytest.mark.parametrize("nic", ["e1000", "virtio-net-pci", "rtl8139"])
def test_the_nic_model_is_on_the_user_network(iso: Path, tmp_path: Path, nic: str) -> None:
    argv = _argv(GuestConfig(iso=iso, nic=nic), tmp_path / "w")
    assert f"{nic},netdev=net0" in _values(argv, "-device")


def test_an_unknown_nic_is_refused(iso: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="unknown NIC model 'ne2k'"):
        _argv(GuestConfig(iso=iso, nic="ne2k"), tmp_path / "w")


def test_a_missing_iso_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such ISO"):
        _argv(GuestConfig(iso=tmp_path / "none.iso"), tmp_path / "w")


def test_memory_and_cpus_default_to_512_mib_and_one(iso: Path, tmp_path: Path) -> None:
    argv = _argv(GuestConfig(iso=iso), tmp_path / "w")
    assert (_values(argv, "-m"), _values(argv, "-smp")) == (["512"], ["1"])
    argv = _argv(GuestConfig(iso=iso, memory_mb=256, cpus=4), tmp_path / "w")
    assert (_values(argv, "-m"), _values(argv, "-smp")) == (["256"], ["4"])


def test_the_network_is_restricted_and_forwards_reach_host_loopback_only(
    iso: Path, tmp_path: Path
) -> None:
    forwards = (Forward("10.0.2.100", 8443, 40001), Forward("10.0.2.101", 80, 40002))
    argv = _argv(GuestConfig(iso=iso, forwards=forwards), tmp_path / "w")
    [netdev] = _values(argv, "-netdev")
    parts = netdev.split(",")
    assert parts[:3] == ["user", "id=net0", "restrict=on"]
    assert parts[3:] == [
        "guestfwd=tcp:10.0.2.100:8443-cmd:socat - TCP:127.0.0.1:40001",
        "guestfwd=tcp:10.0.2.101:80-cmd:socat - TCP:127.0.0.1:40002",
    ]
    assert not any("hostfwd" in a for a in argv)


def test_without_forwards_the_guest_reaches_nothing(iso: Path, tmp_path: Path) -> None:
    argv = _argv(GuestConfig(iso=iso), tmp_path / "w")
    assert _values(argv, "-netdev") == ["user,id=net0,restrict=on"]


def test_headless_puts_the_console_on_stdio_and_qmp_and_shell_on_sockets(
    iso: Path, tmp_path: Path
) -> None:
    workdir = tmp_path / "w"
    argv = _argv(GuestConfig(iso=iso, ttys1=True), workdir)
    assert _values(argv, "-display") == ["none"]
    assert _values(argv, "-monitor") == ["none"]
    # The first -serial is the guest's ttyS0 (the console), the second its ttyS1 (the shell).
    assert _values(argv, "-serial") == ["stdio", "chardev:shell"]
    assert _values(argv, "-qmp") == [f"unix:{workdir / 'qmp.sock'},server=on,wait=off"]
    assert _values(argv, "-chardev") == [
        f"socket,id=shell,path={workdir / 'shell.sock'},server=on,wait=off"
    ]


def test_a_window_gets_no_serial_redirection_and_the_extra_options_last(
    iso: Path, tmp_path: Path
) -> None:
    cfg = GuestConfig(iso=iso, headless=False, extra=("-nographic",))
    argv = _argv(cfg, tmp_path / "w")
    assert not _values(argv, "-serial") and not _values(argv, "-qmp")
    assert argv[-1] == "-nographic"


def test_counting_instructions_runs_single_threaded_tcg(
    iso: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """QEMU refuses -icount with multi-threaded TCG, the harness's default."""
    monkeypatch.delenv("LIVECD_ACCEL", raising=False)
    assert _values(_argv(GuestConfig(iso=iso), tmp_path / "a"), "-accel") == ["tcg,thread=multi"]
    argv = _argv(GuestConfig(iso=iso, extra=counting_instructions()), tmp_path / "b")
    assert _values(argv, "-accel") == ["tcg"]
    assert _values(argv, "-icount") == ["shift=2,sleep=on"]
