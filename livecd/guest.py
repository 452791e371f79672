"""The CPUShare guest in the live system: the `cpushare` package (orders, jail, seller:
standard library only) and the jail's loader and self-test job, built by the host's C
compiler through `livecd.toolchain` and cached there."""

from __future__ import annotations

import stat
from pathlib import Path

import cpushare
from cpushare.jail.runner import JOB_IDENTITY
from diskformats.cpio import Entry
from livecd import toolchain
from livecd.python_runtime import STDLIB

CPUSHARE_SRC = Path(cpushare.__file__).resolve().parent
_REG = stat.S_IFREG | 0o644
_SETUID = stat.S_IFREG | stat.S_ISUID | 0o750
# The ids of overlays/etc/passwd and group: the sellers' group, the jobs user and group.
SELLERS_GID = 100
JOBS_UID = JOBS_GID = 101


def cpushare_package(under: str = STDLIB) -> list[Entry]:
    """The whole `cpushare` package (the guest side: standard library only) below `under`:
    by default the interpreter's own library directory, so that `python3 -I -S -m
    cpushare.seller` finds it without site processing."""
    return [
        Entry(f"{under}/cpushare/{p.relative_to(CPUSHARE_SRC).as_posix()}", _REG, source=p)
        for p in sorted(CPUSHARE_SRC.rglob("*.py"))
    ]


def jail_binaries() -> list[Entry]:
    """The jail loader and the self-test job, from the toolchain's cache, and the file
    whose owner is the jobs identity. The loader is setuid root and only the sellers'
    group may run it: a seller's jobs run as cpushare-job, not as the seller."""
    return [
        Entry("usr/lib/cpushare/jail-loader", _SETUID, source=toolchain.loader(), gid=SELLERS_GID),
        Entry("usr/lib/cpushare/selftest.job", _REG, source=toolchain.selftest_job()),
        Entry(
            JOB_IDENTITY.relative_to("/").as_posix(),
            _REG,
            data=b"cpushare-job\n",
            uid=JOBS_UID,
            gid=JOBS_GID,
        ),
    ]
