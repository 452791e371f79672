"""Running external programs: one wrapper that logs the command line and turns failures
into one-line user errors."""

from __future__ import annotations

import logging
import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from livecd.errors import ToolMissing, UserError

log = logging.getLogger("livecd.run")


def need(tool: str, package: str) -> str:
    """Path of `tool`, or a ToolMissing error naming the Debian package to install."""
    path = shutil.which(tool)
    if path is None:
        raise ToolMissing(tool, package)
    return path


def run(
    argv: Sequence[str | Path],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    what: str | None = None,
    input: bytes | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run argv, capturing output. A non-zero exit becomes a UserError quoting its last line."""
    args = [str(a) for a in argv]
    log.debug("run: %s", shlex.join(args))
    proc = subprocess.run(args, env=env, cwd=cwd, input=input, capture_output=True, check=False)
    if proc.returncode != 0:
        err = (proc.stderr or proc.stdout).decode(errors="replace").strip().splitlines()
        last = err[-1] if err else f"exit status {proc.returncode}"
        raise UserError(f"{what or args[0]} failed: {last}")
    return proc
