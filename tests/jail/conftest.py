"""Shared pieces of the jail tests: a loader and SDK jobs built once per session."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from livecd.toolchain import FSDITHER_SOURCE, SELFTEST_SOURCE, build_job, build_loader

HERE = Path(__file__).resolve().parent
ATTACKS_DIR = HERE / "attacks"
JOBS_DIR = HERE / "jobs"


@pytest.fixture(scope="session")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("jail-build")


@pytest.fixture(scope="session")
def loader(build_dir: Path) -> Path:
    """The jail loader, built from this tree into a path of its own."""
    return build_loader(build_dir / "jail-loader")


def build_all(sources: list[Path], out_dir: Path) -> dict[str, Path]:
    """Each C file built into a job named after it, two compilers at a time."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        jobs = pool.map(lambda src: build_job([src], out_dir / f"{src.stem}.job"), sources)
        return {src.stem: job for src, job in zip(sources, jobs, strict=True)}


@pytest.fixture(scope="session")
def job_paths(build_dir: Path) -> dict[str, Path]:
    """The test jobs of tests/jail/jobs and the reference jobs, built, by name."""
    return build_all([*sorted(JOBS_DIR.glob("*.c")), SELFTEST_SOURCE, FSDITHER_SOURCE], build_dir)


@pytest.fixture(scope="session")
def jobs(job_paths: dict[str, Path]) -> dict[str, bytes]:
    """The same jobs as program bytes."""
    return {name: path.read_bytes() for name, path in job_paths.items()}


@pytest.fixture(scope="session")
def attack_paths(build_dir: Path) -> dict[str, Path]:
    """The attack corpus of tests/jail/attacks, built, by name."""
    out = build_dir / "attacks"
    out.mkdir()
    return build_all(sorted(ATTACKS_DIR.glob("*.c")), out)


@pytest.fixture(scope="session")
def attacks(attack_paths: dict[str, Path]) -> dict[str, bytes]:
    """The same attacks as program bytes."""
    return {name: path.read_bytes() for name, path in attack_paths.items()}


def our_children() -> list[int]:
    """Pids of live processes whose parent is this test process."""
    me = str(os.getpid())
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me:
            found.append(int(stat.parent.name))
    return found


@pytest.fixture
def no_leftovers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Run in an empty directory; the returned check fails if a process, file or fd remains."""
    monkeypatch.chdir(tmp_path)
    fds = set(Path("/proc/self/fd").iterdir())
    # Children from before the test (the session's browser, say) are not the test's.
    before = set(our_children())

    def check() -> None:
        assert set(our_children()) - before == set()
        assert list(tmp_path.iterdir()) == []
        assert set(Path("/proc/self/fd").iterdir()) == fds

    return check
