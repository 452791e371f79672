"""Building the jail loader and jobs with the host's C compiler, and running jobs locally."""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from cpushare.jail.hostbuild import first_error
from cpushare.jail.loader import loader_compile_command
from cpushare.sdk import hosted_compile_command, job_compile_command
from livecd.errors import UserError
from livecd.run import need

log = logging.getLogger("livecd.jobs")

CC = "cc"
CC_PACKAGE = "gcc"
_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def _check_sources(sources: Sequence[Path]) -> None:
    if not sources:
        raise UserError("no source files given: name at least one .c file")
    for source in sources:
        if not source.is_file():
            raise UserError(f"{source}: no such source file")


def _compile(command_for: Callable[[Path], list[str]], out: Path, what: str) -> Path:
    """Compile into a partial file next to `out`, then rename it: never a half-written job."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    os.close(fd)
    partial = Path(name)
    command = command_for(partial)
    log.debug("run: %s", shlex.join(command))
    proc = subprocess.run(command, capture_output=True, check=False)
    if proc.returncode != 0:
        partial.unlink(missing_ok=True)
        raise UserError(f"building {what} failed: {first_error(proc.stderr or proc.stdout)}")
    if proc.stderr.strip():
        log.warning("%s: compiler warnings:\n%s", what, proc.stderr.decode(errors="replace"))
    partial.chmod(0o755)  # mkstemp made it private; the linker kept that
    os.replace(partial, out)
    return out


def build_loader(out: Path) -> Path:
    """Build the freestanding jail loader (installed as /usr/lib/cpushare/jail-loader)."""
    cc = need(CC, CC_PACKAGE)
    return _compile(lambda path: loader_compile_command(path, cc), out, "the jail loader")


def build_job(sources: Sequence[Path], out: Path) -> Path:
    """Build C sources that define `int main(void)` into a jail job, with the SDK."""
    _check_sources(sources)
    cc = need(CC, CC_PACKAGE)
    return _compile(lambda path: job_compile_command(sources, path, cc), out, str(out))


def build_hosted(sources: Sequence[Path], out: Path) -> Path:
    """Build the same job sources as an ordinary libc program (speed comparisons, debugging)."""
    _check_sources(sources)
    cc = need(CC, CC_PACKAGE)
    return _compile(lambda path: hosted_compile_command(sources, path, cc), out, str(out))


def parse_size(text: str) -> int:
    """Bytes in `text`: a number with an optional K, M, G or T suffix (powers of 1024)."""
    cleaned = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = cleaned[-1:] if cleaned[-1:] in _SIZE_UNITS else ""
    number = cleaned[: len(cleaned) - len(unit)]
    if not number.isdigit():
        raise UserError(f"{text!r} is not a size: use a number of bytes, or e.g. 64M, 1G")
    return int(number) * _SIZE_UNITS[unit]


def read_file(path: Path, what: str) -> bytes:
    """The bytes of `path`, or a UserError naming it as `what`."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read {what} {path}: {exc.strerror}") from exc
