"""The seccomp check, its command line, and where the loader and self-test job come from."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cpushare.console import parse_line
from cpushare.jail import JailError, find_loader, self_test
from cpushare.jail.check import find_selftest_job, strict_mode_problem
from livecd import toolchain
from livecd.errors import UserError


def test_self_test_passes_here(loader: Path, job_paths: dict[str, Path]) -> None:
    report = self_test(loader=loader, job=job_paths["selftest"])
    assert report.ok, report.failures
    assert report.passed == ["strict mode available", "forbidden syscall killed", "benign job ok"]
    assert report.summary().startswith("strict seccomp verified")


def test_failing_on_purpose_names_the_check(loader: Path, job_paths: dict[str, Path]) -> None:
    report = self_test(loader=loader, job=job_paths["selftest"], fail_on_purpose=True)
    assert not report.ok
    assert report.failures == [
        "a forbidden system call was not stopped (job ended ok: exit status 0)"
    ]


def test_a_loader_that_does_not_jail_fails_both_job_checks(job_paths: dict[str, Path]) -> None:
    report = self_test(loader=Path("/bin/true"), job=job_paths["selftest"])
    assert not report.ok
    assert len(report.failures) == 2
    assert "forbidden system call was not stopped" in report.failures[0]
    assert "benign job did not succeed" in report.failures[1]


def test_a_missing_job_is_reported(loader: Path, tmp_path: Path) -> None:
    report = self_test(loader=loader, job=tmp_path / "missing.job")
    assert not report.ok
    assert "no self-test job or loader" in report.failures[0]


@pytest.mark.parametrize(
    ("status", "problem"),
    [
        ("Name:\tx\nSeccomp:\t0\nSeccomp_filters:\t0\n", None),
        ("Name:\tx\nSeccomp:\t2\n", "already runs under seccomp mode 2"),
        ("Name:\tx\n", "no seccomp support"),
    ],
)
def test_strict_mode_availability(tmp_path: Path, status: str, problem: str | None) -> None:
    status_file = tmp_path / "status"
    status_file.write_text(status)
    found = strict_mode_problem(status_file)
    assert found is None if problem is None else problem in (found or "")


def run_selftest_command(loader: Path, job: Path, **env: str) -> tuple[int, dict[str, str] | None]:
    proc = subprocess.run(
        [sys.executable, "-m", "cpushare.jail.selftest", "--loader", str(loader)],
        env={**os.environ, "CPUSHARE_SELFTEST_JOB": str(job), **env},
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.stderr == ""
    return proc.returncode, parse_line(proc.stdout)


def test_selftest_command_prints_verified(loader: Path, job_paths: dict[str, Path]) -> None:
    code, line = run_selftest_command(loader, job_paths["selftest"])
    assert code == 0
    assert line is not None
    assert (line["event"], line["status"]) == ("seccomp", "verified")


def test_selftest_command_fails_on_request(loader: Path, job_paths: dict[str, Path]) -> None:
    code, line = run_selftest_command(loader, job_paths["selftest"], CPUSHARE_SELFTEST="fail")
    assert code == 1
    assert line is not None
    assert (line["event"], line["status"]) == ("seccomp", "failed")
    assert "not stopped" in line["reason"]


def test_toolchain_builds_the_loader_once_into_its_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    built = toolchain.loader()
    assert built.parent == tmp_path / "livecd" / "toolchain"
    assert os.access(built, os.X_OK)
    assert b"ld-linux" not in built.read_bytes()  # static: no interpreter named
    stamp = built.stat().st_mtime_ns
    assert toolchain.loader() == built
    assert built.stat().st_mtime_ns == stamp
    assert [p.name for p in built.parent.iterdir()] == [built.name]  # no partial file


def test_toolchain_selftest_job_passes_the_self_test(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loader: Path
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    job = toolchain.selftest_job()
    assert job.parent == tmp_path / "livecd" / "toolchain"
    assert self_test(loader=loader, job=job).ok


def test_environment_overrides_win(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CPUSHARE_LOADER", str(tmp_path / "my-loader"))
    monkeypatch.setenv("CPUSHARE_SELFTEST_JOB", str(tmp_path / "my.job"))
    assert find_loader() == tmp_path / "my-loader"
    assert find_selftest_job() == tmp_path / "my.job"


def test_guest_without_a_loader_says_where_one_comes_from(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CPUSHARE_LOADER", raising=False)
    monkeypatch.setattr("cpushare.jail.loader.IMAGE_LOADER", Path("/nonexistent/jail-loader"))
    with pytest.raises(JailError, match="set CPUSHARE_LOADER"):
        find_loader()


def test_no_compiler_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(UserError, match="install gcc"):
        toolchain.loader()
