"""A Debian 12 root for the package tests, made by mmdebstrap from the machine's apt
sources and cached between runs, and commands run in it by chroot."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from livecd.debian import suite_sources
from livecd.files import cache_home

EPOCH = 1_700_000_000
SUITE = "bookworm"
# The package's dependencies (dpkg installs it offline, as apt would after fetching
# them) and systemd, whose systemd-analyze checks the unit.
ROOT_PACKAGES = ("python3", "adduser", "systemd")
# The environment of commands in the root: nothing of the host's (its CPUSHARE_LOADER
# would point the sellers at a file the root does not have).
ROOT_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/root"}


def root_tarball() -> Path:
    """A minbase Debian 12 root with the package's dependencies, as a tarball made once
    per apt sources and package list (the first run downloads about 50 MB)."""
    if os.geteuid() != 0:
        pytest.skip("installing into a chroot needs root")
    mmdebstrap = shutil.which("mmdebstrap")
    if mmdebstrap is None:
        pytest.skip("mmdebstrap is not installed (scripts/install-host-packages.sh)")
    sources = suite_sources(SUITE)
    if not sources:
        pytest.skip(f"no apt source of this machine serves {SUITE}")
    key = hashlib.sha256(f"{sources}\0{','.join(ROOT_PACKAGES)}".encode()).hexdigest()[:16]
    out = cache_home() / "deb-test" / f"{SUITE}-minbase-{key}.tar"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        sources_file = Path(tmp) / "host.sources"
        sources_file.write_text(sources)
        tar = Path(tmp) / "root.tar"
        subprocess.run(
            [mmdebstrap, "--quiet", "--variant=minbase", "--mode=root",
             f"--include={','.join(ROOT_PACKAGES)}", SUITE, str(tar), str(sources_file)],
            check=True,
        )  # fmt: skip
        tar.replace(out)
    for old in out.parent.glob(f"{SUITE}-minbase-*.tar"):
        if old != out:  # made from other sources or packages: never used again
            old.unlink()
    return out


class DebianRoot:
    """An unpacked Debian root with /proc mounted; commands run in it by chroot."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def run(
        self, *argv: str, env: dict[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["chroot", str(self.path), *argv],
            env={**ROOT_ENV, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def processes(self) -> list[int]:
        """Every process whose root is this root."""
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if Path(os.readlink(entry / "root")) == self.path:
                    pids.append(int(entry.name))
            except OSError:
                continue
        return pids

    def uid(self, user: str) -> int | None:
        return self._id("etc/passwd", user)

    def gid(self, group: str) -> int | None:
        return self._id("etc/group", group)

    def _id(self, table: str, name: str) -> int | None:
        for line in (self.path / table).read_text().splitlines():
            fields = line.split(":")
            if fields[0] == name:
                return int(fields[2])
        return None
