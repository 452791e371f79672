"""The job SDK's files and the compiler command lines that build jobs with them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

SDK_DIR = Path(__file__).resolve().parent
HEADER = SDK_DIR / "cpushare.h"
START = SDK_DIR / "start.c"
LINKER_SCRIPT = SDK_DIR / "job.ld"

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


def job_compile_command(sources: Sequence[Path], out: Path, cc: str = "cc") -> list[str]:
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


def hosted_compile_command(sources: Sequence[Path], out: Path, cc: str = "cc") -> list[str]:
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
