"""The host's C toolchain: the jail's loader and self-test job, and jobs built with the SDK.

Every C part of the project is compiled here, by one set of command lines, into one cache
(`cache_home()/toolchain`, keyed by the command line and the bytes of every input): the
builder puts the loader and self-test job into the image, and on a development host
`jail_environment()` points the guest code (`cpushare.jail`, which holds no compiler code)
at the same builds. A build goes to a partial file renamed into place: never a
half-written program.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shlex
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import cpushare.jail
from livecd.errors import UserError
from livecd.files import cache_home
from livecd.run import need

log = logging.getLogger("livecd.toolchain")

CC = "cc"
CC_PACKAGE = "gcc"

JAIL_DIR = Path(cpushare.jail.__file__).resolve().parent
LOADER_SOURCE = JAIL_DIR / "loader.c"
SDK_DIR = Path(__file__).resolve().parent / "sdk"
HEADER = SDK_DIR / "cpushare.h"
START = SDK_DIR / "start.c"
LINKER_SCRIPT = SDK_DIR / "job.ld"
FSDITHER_SOURCE = SDK_DIR / "jobs" / "fsdither.c"
# A job like any other, built with the SDK (its header, start.c and job.ld), so that the
# boot-time check runs what every job runs; the guest needs only the built job.
SELFTEST_SOURCE = SDK_DIR / "jobs" / "selftest.c"
SDK_FILES = (HEADER, START, LINKER_SCRIPT)

# Far above the job window, the arena and the stack (cpushare.jail.elf), below mmap_base.
LOADER_ADDRESS = 0x5000_0000_0000
# Shared by jail jobs and their hosted twins, so speed comparisons compare like with like.
OPTIMIZE = ["-O2", "-std=gnu11", "-Wall", "-Wextra"]
# No libc, no TLS (nothing sets %fs, hence no stack protector), no unwind tables, fixed
# addresses from job.ld. libgcc is freestanding and supplies 128-bit arithmetic helpers.
JOB_CFLAGS = [
    "-ffreestanding",
    "-fno-stack-protector",
    "-fno-pie",
    "-fno-asynchronous-unwind-tables",
    "-fno-unwind-tables",
]
JOB_LDFLAGS = [
    "-static",
    "-nostdlib",
    "-no-pie",
    f"-Wl,-T,{LINKER_SCRIPT}",
    "-Wl,--build-id=none",
    "-Wl,-z,noexecstack",
    "-Wl,-z,max-page-size=4096",
]
_ERROR_MARKS = ("error:", "undefined reference", "multiple definition")


def loader_command(out: Path, cc: str = CC) -> list[str]:
    """The command that builds the freestanding, static loader at `out`."""
    return [
        cc,
        *OPTIMIZE,
        "-ffreestanding",
        "-fno-builtin",
        "-fno-stack-protector",
        # RIP-relative code, so that a non-PIE link at a high address works.
        "-fpie",
        "-fno-asynchronous-unwind-tables",
        "-fno-unwind-tables",
        "-static",
        "-nostdlib",
        "-no-pie",
        f"-Wl,-Ttext-segment={LOADER_ADDRESS:#x}",
        "-Wl,--build-id=none",
        "-Wl,-z,noexecstack",
        "-o",
        str(out),
        str(LOADER_SOURCE),
    ]


def job_command(sources: Sequence[Path], out: Path, cc: str = CC) -> list[str]:
    """The command that builds `sources` (C files defining main) into a jail job at `out`."""
    return [
        cc,
        *OPTIMIZE,
        *JOB_CFLAGS,
        f"-I{SDK_DIR}",
        *JOB_LDFLAGS,
        "-o",
        str(out),
        *(str(s) for s in sources),
        str(START),
        "-lgcc",
    ]


def hosted_command(sources: Sequence[Path], out: Path, cc: str = CC) -> list[str]:
    """The command that builds the same job sources as an ordinary libc program."""
    return [
        cc,
        *OPTIMIZE,
        "-DCPUSHARE_HOSTED",
        f"-I{SDK_DIR}",
        "-o",
        str(out),
        *(str(s) for s in sources),
    ]


def first_error(output: bytes) -> str:
    """The compiler's first error line, which names the problem; else its last line."""
    lines = output.decode(errors="replace").strip().splitlines() or ["no output"]
    return next((line for line in lines if any(m in line for m in _ERROR_MARKS)), lines[-1])


def _check_sources(sources: Sequence[Path]) -> None:
    if not sources:
        raise UserError("no source files given: name at least one .c file")
    for source in sources:
        if not source.is_file():
            raise UserError(f"{source}: no such source file")


def _compile(command_for: Callable[[Path], list[str]], out: Path, what: str) -> Path:
    """Compile into a partial file next to `out`, then rename it."""
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
    return _compile(lambda path: loader_command(path, cc), out, "the jail loader")


def build_job(sources: Sequence[Path], out: Path) -> Path:
    """Build C sources that define `int main(void)` into a jail job, with the SDK."""
    _check_sources(sources)
    cc = need(CC, CC_PACKAGE)
    return _compile(lambda path: job_command(sources, path, cc), out, str(out))


def build_hosted(sources: Sequence[Path], out: Path) -> Path:
    """Build the same job sources as an ordinary libc program (speed comparisons, debugging)."""
    _check_sources(sources)
    cc = need(CC, CC_PACKAGE)
    return _compile(lambda path: hosted_command(sources, path, cc), out, str(out))


def _cached(
    name: str, command: list[str], inputs: Sequence[Path], make: Callable[[Path], Path]
) -> Path:
    digest = hashlib.sha256("\0".join(command).encode())
    for path in inputs:
        digest.update(b"\0" + path.name.encode() + b"\0" + path.read_bytes())
    out = cache_home() / "toolchain" / f"{name}-{digest.hexdigest()[:24]}"
    return out if out.is_file() else make(out)


def loader() -> Path:
    """The jail loader, built once per change of its source or command line."""
    return _cached("jail-loader", loader_command(Path("OUT")), [LOADER_SOURCE], build_loader)


def selftest_job() -> Path:
    """The jail's self-test job, built once per change of its source or the SDK."""
    sources = [SELFTEST_SOURCE]
    return _cached(
        "selftest.job",
        job_command(sources, Path("OUT")),
        [*sources, *SDK_FILES],
        lambda out: build_job(sources, out),
    )


def jail_environment() -> dict[str, str]:
    """The variables that point `cpushare.jail` on this host at the cached builds of its
    loader and self-test job (the image has its own copies at fixed paths)."""
    return {"CPUSHARE_LOADER": str(loader()), "CPUSHARE_SELFTEST_JOB": str(selftest_job())}
