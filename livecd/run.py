"""Running external programs: one wrapper that logs every command line (seen under
`livecd -v`) and turns failures into one-line user errors, and a streaming twin of it."""

from __future__ import annotations

import contextlib
import logging
import shlex
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO

from diskformats.run import need
from livecd.errors import UserError

__all__ = ["need", "run", "streamed"]

log = logging.getLogger("livecd.run")


def _logged(argv: Sequence[str | Path]) -> list[str]:
    args = [str(a) for a in argv]
    log.debug("run: %s", shlex.join(args))
    return args


def run(
    argv: Sequence[str | Path],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    what: str | None = None,
    input: bytes | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    """Run argv, capturing output. With `check`, a non-zero exit becomes a UserError
    quoting its last line; without, the caller reads the exit status."""
    args = _logged(argv)
    proc = subprocess.run(args, env=env, cwd=cwd, input=input, capture_output=True, check=False)
    if check and proc.returncode != 0:
        err = (proc.stderr or proc.stdout).decode(errors="replace").strip().splitlines()
        last = err[-1] if err else f"exit status {proc.returncode}"
        raise UserError(f"{what or args[0]} failed: {last}")
    return proc


@contextlib.contextmanager
def streamed(argv: Sequence[str | Path]) -> Iterator[IO[bytes]]:
    """argv's standard output as a stream, for output too large to hold (its errors are
    discarded: the reader judges what it gets). The program is waited for at the end."""
    proc = subprocess.Popen(_logged(argv), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None  # stdout=PIPE
    try:
        yield proc.stdout
    finally:
        proc.stdout.close()
        proc.wait()
