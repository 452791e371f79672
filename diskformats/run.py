"""Host programs a format needs (zstd, lz4): found by name, fed bytes, their output kept.
Every command line is logged (seen under `livecd -v`); a failure is one UserError line."""

from __future__ import annotations

import logging
import shlex
import shutil
import subprocess

from diskformats.errors import ToolMissing, UserError

log = logging.getLogger(__name__)


def need(tool: str, package: str) -> str:
    """Path of `tool`, or a ToolMissing error naming the Debian package to install."""
    path = shutil.which(tool)
    if path is None:
        raise ToolMissing(tool, package)
    return path


def pipe(argv: list[str], data: bytes, what: str) -> bytes:
    """What `argv` writes for `data` on its input; a non-zero exit quotes its last line."""
    log.debug("run: %s", shlex.join(argv))
    proc = subprocess.run(argv, input=data, capture_output=True, check=False)
    if proc.returncode != 0:
        err = (proc.stderr or proc.stdout).decode(errors="replace").strip().splitlines()
        raise UserError(f"{what} failed: {err[-1] if err else f'exit status {proc.returncode}'}")
    return proc.stdout
