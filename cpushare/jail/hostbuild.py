"""Building the jail's C parts on a development host, once, cached by content hash.

The live image ships them prebuilt; on a host with a C compiler the jail builds what it
is missing into `$XDG_CACHE_HOME/livecd/jail/` (by default `~/.cache/livecd/jail/`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from cpushare.jail.model import JailError

CC = "cc"


def cache_dir() -> Path:
    """Where host builds of the loader and the self-test job are kept."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "livecd" / "jail"


_ERROR_MARKS = ("error:", "undefined reference", "multiple definition")


def first_error(output: bytes) -> str:
    """The compiler's first error line, which names the problem; else its last line."""
    lines = output.decode(errors="replace").strip().splitlines() or ["no output"]
    return next((line for line in lines if any(m in line for m in _ERROR_MARKS)), lines[-1])


def cached_build(name: str, inputs: Sequence[Path], command: Callable[[Path], list[str]]) -> Path:
    """The cached build of `inputs` by `command(out)`, building it first if needed."""
    digest = hashlib.sha256("\0".join(command(Path("OUT"))).encode())
    for path in inputs:
        digest.update(path.read_bytes())
    target = cache_dir() / f"{name}-{digest.hexdigest()[:16]}"
    if target.is_file():
        return target
    if shutil.which(CC) is None:
        raise JailError(
            f"no prebuilt {name} and no C compiler ({CC}) to build one: install gcc "
            f"(scripts/install-host-packages.sh)"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    partial = Path(name)
    proc = subprocess.run(command(partial), capture_output=True, check=False)
    if proc.returncode != 0:
        partial.unlink(missing_ok=True)
        raise JailError(f"building {name} failed: {first_error(proc.stderr or proc.stdout)}")
    partial.chmod(0o755)  # mkstemp made it private; the linker kept that
    os.replace(partial, target)
    return target
