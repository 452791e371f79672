"""Where the jail loader is: an override, or the copy the image (or package) installs.

The loader is C (`loader.c`, beside this file), built by the host's toolchain
(`livecd.toolchain`): the guest holds no compiler code.
"""

from __future__ import annotations

import os
from pathlib import Path

from cpushare.jail.model import JailError

IMAGE_LOADER = Path("/usr/lib/cpushare/jail-loader")


def find_prebuilt(variable: str, installed: Path, what: str) -> Path:
    """$`variable` if set, else `installed` if it exists, else a JailError naming both."""
    override = os.environ.get(variable)
    if override:
        return Path(override)
    if installed.is_file():
        return installed
    raise JailError(
        f"no {what}: set {variable}, or run from the live system or an installed package "
        f"(on a development host, livecd.toolchain.jail_environment() builds one)"
    )


def find_loader() -> Path:
    """$CPUSHARE_LOADER, else the installed loader."""
    return find_prebuilt("CPUSHARE_LOADER", IMAGE_LOADER, "jail loader")
