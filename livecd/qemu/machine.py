"""The QEMU command line for each firmware, medium and network card.

Networking is always QEMU's user mode with `restrict=on`: the guest gets DHCP from QEMU
and reaches nothing but what a `guestfwd` rule maps to a host loopback port.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from livecd.errors import ToolMissing, UserError
from livecd.qemu.direct import direct_boot
from livecd.run import need

OVMF_DIR = Path("/usr/share/OVMF")
SHELL_OPTION = "cpushare.shell=ttyS1"
NIC_MODELS = ("e1000", "e1000e", "virtio-net-pci", "rtl8139", "vmxnet3", "pcnet", "igb")
Firmware = Literal["bios", "uefi"]
Media = Literal["cdrom", "usb"]


@dataclass(frozen=True)
class Forward:
    """A guestfwd rule: the guest's `guest_addr:guest_port` reaches host loopback `host_port`.

    Each guest connection gets its own relay (`cmd:socat`): a character-device target
    would be a single stream, opened once when QEMU starts, that every guest connection
    shares, and QEMU would not start while nothing listens on the host port.
    """

    guest_addr: str
    guest_port: int
    host_port: int

    def option(self) -> str:
        relay = f"cmd:socat - TCP:127.0.0.1:{self.host_port}"
        return f"guestfwd=tcp:{self.guest_addr}:{self.guest_port}-{relay}"


# The least memory the CD boots in: with less, Debian 12's signed kernel cannot unpack
# the initramfs and panics before the first stage runs (docs/memory.md).
SMALLEST_MEMORY_MB = 90


@dataclass(frozen=True)
class GuestConfig:
    iso: Path
    firmware: Firmware = "bios"
    secure_boot: bool = False
    media: Media = "cdrom"
    cpus: int = 1
    memory_mb: int | None = 512  # None: no -m, QEMU's default (128 MiB)
    nic: str = "e1000"
    forwards: Sequence[Forward] = ()
    drives: Sequence[Path] = ()  # extra raw fixed disks (e.g. a volunteer's data disk)
    sticks: Sequence[Path] = ()  # raw images as removable USB disks (e.g. a CPUSHARE medium)
    headless: bool = True
    # A root shell on the second serial port (ttyS1), see Guest.shell: the live CD starts
    # it only with the kernel option SHELL_OPTION, which the harness gives by booting the
    # ISO's kernel directly (livecd.qemu.direct) rather than through its boot menu.
    shell: bool = False
    # ttyS1 on the shell's socket without the option: to check that no shell answers.
    ttys1: bool = False
    extra: Sequence[str] = field(default_factory=tuple)


def ovmf_files(secure_boot: bool) -> tuple[Path, Path]:
    """OVMF's code and variable-store template: with Microsoft's keys enrolled and Secure
    Boot enforced, or plain."""
    code, vars_ = (
        ("OVMF_CODE_4M.ms.fd", "OVMF_VARS_4M.ms.fd")
        if secure_boot
        else ("OVMF_CODE_4M.fd", "OVMF_VARS_4M.fd")
    )
    paths = (OVMF_DIR / code, OVMF_DIR / vars_)
    for p in paths:
        if not p.exists():
            raise ToolMissing(str(p), "ovmf")
    return paths


def accelerator() -> str:
    """TCG unless LIVECD_ACCEL says otherwise (e.g. `kvm`): a /dev/kvm that exists is not
    always one that works (nested virtualisation), and TCG always does."""
    return os.environ.get("LIVECD_ACCEL", "tcg,thread=multi")


# QEMU counting the guest's time in instructions (4 ns each, its idle sleeps skipped): the
# guest's clock then follows its own work, not the host's load, so two builds compare
# within a few hundredths of a second. Needs single-threaded TCG: see `counting_instructions`.
ICOUNT = ("-icount", "shift=2,sleep=on")


def counting_instructions() -> tuple[str, ...]:
    """QEMU options that count guest time in instructions, the accelerator set for them
    (for the guests this process starts): benchmarks comparing builds, not measuring goals."""
    os.environ["LIVECD_ACCEL"] = "tcg"
    return ICOUNT


def qemu_argv(cfg: GuestConfig, workdir: Path) -> list[str]:
    """The QEMU command line for `cfg`; OVMF's variable store is copied into `workdir`,
    where the QMP and shell sockets of a headless guest also live."""
    binary = need("qemu-system-x86_64", "qemu-system-x86")
    if cfg.nic not in NIC_MODELS:
        raise UserError(f"unknown NIC model {cfg.nic!r}: choose one of {', '.join(NIC_MODELS)}")
    if not cfg.iso.is_file():
        raise UserError(f"{cfg.iso}: no such ISO; build one with `livecd build`")
    argv = [binary, "-accel", accelerator(), "-smp", str(cfg.cpus)]
    if cfg.memory_mb is not None:
        argv += ["-m", str(cfg.memory_mb)]
    argv += _firmware(cfg, workdir)
    argv += _media(cfg)
    if cfg.shell:
        if cfg.secure_boot:
            raise UserError(
                "the harness's shell boots the kernel directly, which Secure Boot refuses: "
                "use it without Secure Boot"
            )
        argv += direct_boot(cfg.iso, workdir, [SHELL_OPTION])
    if cfg.forwards:
        need("socat", "socat")
    netdev = ",".join(["user", "id=net0", "restrict=on", *(f.option() for f in cfg.forwards)])
    argv += ["-netdev", netdev, "-device", f"{cfg.nic},netdev=net0"]
    if cfg.headless:
        argv += _headless(cfg, workdir)
    return argv + list(cfg.extra)


def _firmware(cfg: GuestConfig, workdir: Path) -> list[str]:
    if cfg.firmware == "bios":
        if cfg.secure_boot:
            raise UserError("Secure Boot needs UEFI firmware: add --firmware uefi")
        return ["-machine", "pc"]
    code, vars_template = ovmf_files(cfg.secure_boot)
    vars_copy = workdir / "OVMF_VARS.fd"
    shutil.copyfile(vars_template, vars_copy)
    argv = ["-machine", "q35,smm=on" if cfg.secure_boot else "q35"]
    if cfg.secure_boot:
        argv += ["-global", "driver=cfi.pflash01,property=secure,value=on"]
    argv += ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={code}"]
    return [*argv, "-drive", f"if=pflash,format=raw,unit=1,file={vars_copy}"]


def _media(cfg: GuestConfig) -> list[str]:
    """The ISO as a CD or a USB disk, then the USB sticks and the fixed disks. The ISO
    boots first, unless the kernel is booted directly (QEMU gives that boot index 0)."""
    boot = 1 if cfg.shell else 0
    if cfg.media == "cdrom":
        argv = [
            "-drive",
            f"file={cfg.iso},media=cdrom,readonly=on,if=none,id=live",
            "-device",
            f"ide-cd,drive=live,bootindex={boot}",
        ]
    else:
        argv = [
            "-drive",
            f"file={cfg.iso},format=raw,readonly=on,if=none,id=live",
            "-device",
            "qemu-xhci,id=xhci",
            "-device",
            f"usb-storage,bus=xhci.0,drive=live,removable=on,bootindex={boot}",
        ]
    if cfg.sticks and cfg.media != "usb":
        argv += ["-device", "qemu-xhci,id=xhci"]
    for i, stick in enumerate(cfg.sticks):
        argv += _raw_drive(stick, f"stick{i}", "usb-storage,bus=xhci.0", ",removable=on")
    for i, disk in enumerate(cfg.drives):
        argv += _raw_drive(disk, f"disk{i}", "virtio-blk-pci")
    return argv


def _raw_drive(image: Path, name: str, device: str, properties: str = "") -> list[str]:
    """The raw disk image `image` as the drive `name`, seen by the guest through `device`
    (its model and bus) with more `properties` after the drive."""
    return [
        "-drive",
        f"file={image},format=raw,if=none,id={name}",
        "-device",
        f"{device},drive={name}{properties}",
    ]


def _headless(cfg: GuestConfig, workdir: Path) -> list[str]:
    """No display; the first serial port on stdout, QMP on a socket, and the root shell
    on a second socket (ttyS1) when asked."""
    argv = [
        "-display",
        "none",
        "-serial",
        "stdio",
        "-monitor",
        "none",
        "-qmp",
        f"unix:{workdir / 'qmp.sock'},server=on,wait=off",
    ]
    if cfg.shell or cfg.ttys1:
        # After `-serial stdio`: the second -serial is the guest's ttyS1.
        argv += [
            "-chardev",
            f"socket,id=shell,path={workdir / 'shell.sock'},server=on,wait=off",
            "-serial",
            "chardev:shell",
        ]
    return argv
