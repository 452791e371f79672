"""A headless guest: QEMU started on a `GuestConfig`, its serial console captured line by
line, driven through QMP and through a root shell on its second serial port."""

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
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from livecd.qemu.machine import GuestConfig, qemu_argv


def scaled(seconds: float) -> float:
    """`seconds` of waiting for the guest on this machine: times LIVECD_TIMEOUT_FACTOR,
    for slow machines (at least a tenth; an unreadable factor counts as 1)."""
    try:
        factor = max(0.1, float(os.environ.get("LIVECD_TIMEOUT_FACTOR", "1")))
    except ValueError:
        factor = 1.0
    return seconds * factor


@dataclass(frozen=True)
class ConsoleLine:
    host_seconds: float  # since QEMU started
    text: str


class Guest:
    """A headless guest: start it (`with`), read its serial console, power it off.
    Leaving the `with` block kills QEMU if it still runs."""

    def __init__(self, cfg: GuestConfig, log_path: Path) -> None:
        self.cfg = cfg
        self.log_path = log_path
        self.lines: list[ConsoleLine] = []
        self._queue: queue.Queue[ConsoleLine | None] = queue.Queue()
        self._workdir = Path(tempfile.mkdtemp(prefix="livecd-qemu-"))
        self._proc: subprocess.Popen[bytes] | None = None
        self._started = 0.0
        self.started_wall = 0.0  # the host's wall-clock time when QEMU started
        self._shell: socket.socket | None = None
        self._stderr: str | None = None

    def __enter__(self) -> Guest:
        try:
            argv = qemu_argv(self.cfg, self._workdir)
        except BaseException:
            shutil.rmtree(self._workdir, ignore_errors=True)
            raise
        self._started = time.monotonic()
        self.started_wall = time.time()
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
        """Host seconds since QEMU started."""
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

    def next_line(self, timeout: float) -> ConsoleLine | None:
        """The next console line not yet taken, or None after `timeout` host seconds (not
        scaled: the event reader scales its own waits) or once QEMU's output ended."""
        try:
            line = self._queue.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return None
        if line is None:
            self._queue.put(None)  # the end stays visible to every later call
        return line

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
        """Press the ACPI power button; True if the guest powered off within `timeout`
        (scaled)."""
        with contextlib.suppress(OSError):
            self.qmp("system_powerdown")
        assert self._proc is not None
        try:
            self._proc.wait(scaled(timeout))
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
        deadline = time.monotonic() + scaled(timeout)
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

    def shell_answers(self, timeout: float = 5.0) -> bool:
        """Whether a shell answers on ttyS1 within `timeout` (scaled): the port needs its
        socket (GuestConfig.shell or .ttys1). Only asked once the guest is up."""
        try:
            self.shell("true", timeout)
        except TimeoutError:
            return False
        return True

    def kill(self) -> None:
        if self._proc and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()

    @property
    def stderr(self) -> str:
        """What QEMU printed on stderr, once it has exited (read once, then kept)."""
        if self._stderr is None and self._proc and self._proc.stderr and not self.running:
            self._stderr = self._proc.stderr.read().decode(errors="replace").strip()
        return self._stderr or ""


def _qmp_reply(reader: IO[str]) -> dict[str, object]:
    while True:
        msg = json.loads(reader.readline() or "{}")
        if "return" in msg or "error" in msg or not msg:
            return dict(msg)
