"""Where the jail loader comes from: the image's copy, an override, or a host build."""

from __future__ import annotations

import os
from pathlib import Path

from cpushare.jail.hostbuild import CC, cached_build

LOADER_SOURCE = Path(__file__).resolve().parent / "loader.c"
IMAGE_LOADER = Path("/usr/lib/cpushare/jail-loader")
# Far above the job window, the arena and the stack (cpushare.jail.elf), below mmap_base.
LOADER_ADDRESS = 0x5000_0000_0000


def loader_compile_command(out: Path, cc: str = CC) -> list[str]:
    """The command that builds the freestanding, static loader at `out`."""
    return [
        cc,
        "-O2",
        "-std=gnu11",
        "-Wall",
        "-Wextra",
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


def find_loader() -> Path:
    """$CPUSHARE_LOADER, else the image's loader, else a host build (cached by source hash)."""
    override = os.environ.get("CPUSHARE_LOADER")
    if override:
        return Path(override)
    if IMAGE_LOADER.is_file():
        return IMAGE_LOADER
    return cached_build("jail-loader", [LOADER_SOURCE], loader_compile_command)
