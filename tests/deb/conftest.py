"""Fixtures of the package tests: the `.deb` built once, and a Debian 12 root
(`debroot`) with the package's dependencies, unpacked for each test module."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator

import pytest
from debroot import EPOCH, DebianRoot, root_tarball

from livecd.debpkg.archive import Built, build


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "chroot: installs the package in a Debian 12 root (root, mmdebstrap; slow)"
    )


@pytest.fixture(scope="session")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build(tmp_path_factory.mktemp("deb"), EPOCH)


@pytest.fixture(scope="module")
def debian_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DebianRoot]:
    tarball = root_tarball()
    path = tmp_path_factory.mktemp("debian-root").resolve()
    subprocess.run(["tar", "-xf", str(tarball), "-C", str(path)], check=True)
    subprocess.run(["mount", "-t", "proc", "proc", str(path / "proc")], check=True)
    root = DebianRoot(path)
    try:
        yield root
    finally:
        for pid in root.processes():
            os.kill(pid, signal.SIGKILL)
        subprocess.run(["umount", "--lazy", str(path / "proc")], check=True)
        shutil.rmtree(path, ignore_errors=True)
