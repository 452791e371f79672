"""The live CD's kernel options: `cpushare.NAME=VALUE` words on the kernel command line.

They let the machine's owner change what the CD does without rebuilding it, at the boot
menu (press Tab or e): `cpushare.sellers=N`, `cpushare.nice=N`, `cpushare.screen=off`,
`cpushare.jobs=all`.
`cpushare.shell=ttyS1` (a root shell on that serial port, none without it) is read before
Python runs, by /init (templates/rootfs/lib/cpushare/shell-option), with the same rules.
"""

from __future__ import annotations

from pathlib import Path

from cpushare.console import emit

PREFIX = "cpushare."


def kernel_options(cmdline: str) -> dict[str, str]:
    """The `cpushare.` options of a kernel command line, by name (the last one wins)."""
    found = {}
    for word in cmdline.split():
        name, eq, value = word.partition("=")
        if name.startswith(PREFIX) and eq:
            found[name.removeprefix(PREFIX)] = value
    return found


def read_kernel_options(path: Path = Path("/proc/cmdline")) -> dict[str, str]:
    try:
        return kernel_options(path.read_text())
    except OSError:
        return {}


def int_option(options: dict[str, str], name: str, low: int, high: int) -> int | None:
    """Option `name` as an integer from `low` to `high`; None when it is not given, and
    None with a console line saying so when it is not such a number."""
    raw = options.get(name)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if low <= value <= high:
        return value
    emit(
        "error",
        what="option",
        detail=f"{PREFIX}{name}={raw} is not a number from {low} to {high}: ignored",
    )
    return None
