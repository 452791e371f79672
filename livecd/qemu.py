"""QEMU for the live CD: the command line for each firmware and medium, and a headless
guest whose serial console is captured, read line by line and driven through QMP.

Networking is always QEMU's user mode with `restrict=on`: the guest gets DHCP from QEMU
and reaches nothing but what a `guestfwd` rule maps to a host loopback port.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

from livecd.errors import ToolMissing, UserError
from livecd.run import need

OVMF_DIR = Path("/usr/share/OVMF")
NIC_MODELS = ("e1000", "e1000e", "virtio-net-pci", "rtl8139", "vmxnet3", "pcnet", "igb")
Firmware = Literal["bios", "uefi"]
Media = Literal["cdrom", "usb"]


def timeout_factor() -> float:
    """Multiplier for every guest timeout (LIVECD_TIMEOUT_FACTOR), for slow machines."""
    try:
        return max(0.1, float(os.environ.get("LIVECD_TIMEOUT_FACTOR", "1")))
    except ValueError:
        return 1.0


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
    shell: bool = False  # a root shell on the second serial port (ttyS1), see Guest.shell
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


def qemu_argv(cfg: GuestConfig, workdir: Path) -> list[str]:
    """The QEMU command line for `cfg`; OVMF's variable store is copied into `workdir`."""
    binary = need("qemu-system-x86_64", "qemu-system-x86")
    if cfg.nic not in NIC_MODELS:
        raise UserError(f"unknown NIC model {cfg.nic!r}: choose one of {', '.join(NIC_MODELS)}")
    if not cfg.iso.is_file():
        raise UserError(f"{cfg.iso}: no such ISO; build one with `livecd build`")
    argv = [binary, "-accel", accelerator(), "-smp", str(cfg.cpus)]
    if cfg.memory_mb is not None:
        argv += ["-m", str(cfg.memory_mb)]
    if cfg.firmware == "uefi":
        code, vars_template = ovmf_files(cfg.secure_boot)
        vars_copy = workdir / "OVMF_VARS.fd"
        shutil.copyfile(vars_template, vars_copy)
        argv += ["-machine", "q35,smm=on" if cfg.secure_boot else "q35"]
        if cfg.secure_boot:
            argv += ["-global", "driver=cfi.pflash01,property=secure,value=on"]
        argv += [
            "-drive",
            f"if=pflash,format=raw,unit=0,readonly=on,file={code}",
            "-drive",
            f"if=pflash,format=raw,unit=1,file={vars_copy}",
        ]
    elif cfg.secure_boot:
        raise UserError("Secure Boot needs UEFI firmware: add --firmware uefi")
    else:
        argv += ["-machine", "pc"]
    if cfg.media == "cdrom":
        argv += [
            "-drive",
            f"file={cfg.iso},media=cdrom,readonly=on,if=none,id=live",
            "-device",
            "ide-cd,drive=live,bootindex=0",
        ]
    else:
        argv += [
            "-drive",
            f"file={cfg.iso},format=raw,readonly=on,if=none,id=live",
            "-device",
            "qemu-xhci,id=xhci",
            "-device",
            "usb-storage,bus=xhci.0,drive=live,removable=on,bootindex=0",
        ]
    if cfg.sticks and cfg.media != "usb":
        argv += ["-device", "qemu-xhci,id=xhci"]
    for i, stick in enumerate(cfg.sticks):
        argv += [
            "-drive",
            f"file={stick},format=raw,if=none,id=stick{i}",
            "-device",
            f"usb-storage,bus=xhci.0,drive=stick{i},removable=on",
        ]
    for i, disk in enumerate(cfg.drives):
        argv += [
            "-drive",
            f"file={disk},format=raw,if=none,id=disk{i}",
            "-device",
            f"virtio-blk-pci,drive=disk{i}",
        ]
    if cfg.forwards:
        need("socat", "socat")
    netdev = ",".join(["user", "id=net0", "restrict=on", *(f.option() for f in cfg.forwards)])
    argv += ["-netdev", netdev, "-device", f"{cfg.nic},netdev=net0"]
    if cfg.headless:
        argv += [
            "-display",
            "none",
            "-serial",
            "stdio",
            "-monitor",
            "none",
            "-qmp",
            f"unix:{workdir / 'qmp.sock'},server=on,wait=off",
        ]
        if cfg.shell:
            # After `-serial stdio`: the second -serial is the guest's ttyS1.
            argv += [
                "-chardev",
                f"socket,id=shell,path={workdir / 'shell.sock'},server=on,wait=off",
                "-serial",
                "chardev:shell",
            ]
    return argv + list(cfg.extra)


@dataclass
class ConsoleLine:
    host_seconds: float  # since QEMU started
    text: str


class Guest:
    """A headless guest: start it, read its serial console, power it off."""

    def __init__(self, cfg: GuestConfig, log_path: Path) -> None:
        self.cfg = cfg
        self.log_path = log_path
        self.lines: list[ConsoleLine] = []
        self._queue: queue.Queue[ConsoleLine | None] = queue.Queue()
        self._workdir = Path(tempfile.mkdtemp(prefix="livecd-qemu-"))
        self._proc: subprocess.Popen[bytes] | None = None
        self._started = 0.0
        self._shell: socket.socket | None = None

    def __enter__(self) -> Guest:
        argv = qemu_argv(self.cfg, self._workdir)
        self._started = time.monotonic()
        self._proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        threading.Thread(target=self._read_console, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._shell is not None:
            self._shell.close()
        self.kill()
        shutil.rmtree(self._workdir, ignore_errors=True)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def _read_console(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        with self.log_path.open("wb") as log:
            for raw in self._proc.stdout:
                log.write(raw)
                log.flush()
                line = ConsoleLine(self.elapsed, raw.decode(errors="replace").rstrip("\r\n"))
                self.lines.append(line)
                self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, match: Callable[[str], bool], timeout: float) -> ConsoleLine | None:
        """The first new console line that `match`es, or None at timeout or guest exit."""
        deadline = time.monotonic() + timeout * timeout_factor()
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                return None
            if line is None:
                self._queue.put(None)
                return None
            if match(line.text):
                return line
        return None

    def qmp(self, command: str, **arguments: object) -> dict[str, object]:
        """Send one QMP command (e.g. system_powerdown, set_link) and return its reply."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(10)
            sock.connect(str(self._workdir / "qmp.sock"))
            reader = sock.makefile("r")
            reader.readline()  # the greeting
            for cmd in (
                {"execute": "qmp_capabilities"},
                {"execute": command, "arguments": arguments},
            ):
                sock.sendall(json.dumps(cmd).encode() + b"\n")
                reply = _qmp_reply(reader)
            return reply

    def power_button(self, timeout: float) -> bool:
        """Press the ACPI power button; True if the guest powered off within `timeout`."""
        with contextlib.suppress(OSError):
            self.qmp("system_powerdown")
        assert self._proc is not None
        try:
            self._proc.wait(timeout * timeout_factor())
            return True
        except subprocess.TimeoutExpired:
            return False

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def shell(self, command: str, timeout: float = 60.0) -> tuple[int, str]:
        """Run `command` in the guest's root shell on ttyS1 (GuestConfig.shell): its exit
        status and output. The markers are split in quotes so that the terminal's echo of
        the command line never matches them."""
        token = secrets.token_hex(8)
        begin, end = f"{token}-begin", f"{token}-end"
        begin_quoted, end_quoted = f"{token}'-'begin", f"{token}'-'end"
        line = f"echo {begin_quoted}; ( {command} ) </dev/null 2>&1; echo {end_quoted} $?\n"
        if self._shell is None:
            self._shell = socket.socket(socket.AF_UNIX)
            self._shell.connect(str(self._workdir / "shell.sock"))
        self._shell.sendall(line.encode())
        found = re.compile(rf"{begin}\r?\n(.*?){end} (\d+)\r?\n", re.DOTALL)
        received = b""
        deadline = time.monotonic() + timeout * timeout_factor()
        while (left := deadline - time.monotonic()) > 0:
            self._shell.settimeout(left)
            try:
                chunk = self._shell.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            received += chunk
            if match := found.search(received.decode(errors="replace")):
                return int(match.group(2)), match.group(1).replace("\r\n", "\n")
        raise TimeoutError(f"no answer from the guest shell to {command!r} within {timeout} s")

    def kill(self) -> None:
        if self._proc and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()

    @property
    def stderr(self) -> str:
        if self._proc and self._proc.stderr and self._proc.poll() is not None:
            return self._proc.stderr.read().decode(errors="replace").strip()
        return ""


def _qmp_reply(reader: IO[str]) -> dict[str, object]:
    while True:
        msg = json.loads(reader.readline() or "{}")
        if "return" in msg or "error" in msg or not msg:
            return dict(msg)
