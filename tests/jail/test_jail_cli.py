"""`livecd job build|run`: what a research group sees, including every bad input."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from livecd.cli import main
from livecd.cli.job import parse_size
from livecd.sdk.dither import dither, sample_image
from livecd.toolchain import FSDITHER_SOURCE

Invoke = Callable[..., Result]


@pytest.fixture
def livecd(loader: Path) -> Invoke:
    def invoke(*args: str | Path, env: dict[str, str] | None = None) -> Result:
        return CliRunner().invoke(
            main, [str(a) for a in args], env={"CPUSHARE_LOADER": str(loader), **(env or {})}
        )

    return invoke


def test_build_then_run_a_job(livecd: Invoke, tmp_path: Path) -> None:
    job = tmp_path / "out" / "fsdither.job"
    built = livecd("job", "build", FSDITHER_SOURCE, "-o", job)
    assert built.exit_code == 0, built.stderr
    assert job.is_file()
    picture = tmp_path / "picture.pgm"
    picture.write_bytes(sample_image(50, 40, 2))
    ran = livecd("job", "run", job, "--input", picture, "--memory", "32M")
    assert ran.exit_code == 0, ran.stderr
    assert ran.stdout_bytes == dither(picture.read_bytes())
    assert "fsdither.job: ok (exit status 0), cpu" in ran.stderr


def test_a_plain_c_file_builds_with_no_other_option(livecd: Invoke, tmp_path: Path) -> None:
    source = tmp_path / "hello.c"
    source.write_text(
        '#include "cpushare.h"\n'
        'int main(void) { static const char hi[] = "hi\\n"; write(1, hi, 3); return 0; }\n'
    )
    job = tmp_path / "hello.job"
    assert livecd("job", "build", source, "-o", job).exit_code == 0
    ran = livecd("job", "run", job)
    assert (ran.exit_code, ran.stdout_bytes) == (0, b"hi\n")


def test_a_job_that_breaks_the_rules_exits_1_with_its_class(
    livecd: Invoke, attack_paths: dict[str, Path]
) -> None:
    ran = livecd("job", "run", attack_paths["getpid"])
    assert ran.exit_code == 1
    assert "getpid.job: forbidden-syscall" in ran.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "{tmp}/nothing.job"], "cannot read job"),
        (["run", "{source}"], "is not a job the jail can run: not an ELF file"),
        (["run", "{selftest}", "--input", "{tmp}/none"], "cannot read input file"),
        (["run", "{selftest}", "--memory", "12Q"], "'12Q' is not a size"),
        (["run", "{selftest}", "--memory", "512K"], "memory limit must be between"),
        (["run", "{selftest}", "--cpu-seconds", "0"], "CPU limit must be between 1 and"),
        (["run", "{selftest}", "--wall-seconds", "-1"], "wall-clock limit must be a positive"),
        (["run", "{selftest}", "--nice", "20"], "nice must be between 0 and 19"),
        (["run", "{selftest}", "--memory", "64T"], "memory limit must be between"),
        (["build", "{tmp}/missing.c", "-o", "{tmp}/x.job"], "missing.c: no such source file"),
        (["build", "{broken}", "-o", "{tmp}/x.job"], "error: expected"),
        (["build", "{undefined}", "-o", "{tmp}/x.job"], "undefined reference to `printf'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    livecd: Invoke,
    tmp_path: Path,
    job_paths: dict[str, Path],
    args: list[str],
    message: str,
) -> None:
    (tmp_path / "broken.c").write_text("int main(void) { return 0 }\n")
    (tmp_path / "undefined.c").write_text(
        'int printf(const char *, ...);\nint main(void) { return printf("x"); }\n'
    )
    names = {
        "tmp": str(tmp_path),
        "source": str(FSDITHER_SOURCE),
        "selftest": str(job_paths["selftest"]),
        "broken": str(tmp_path / "broken.c"),
        "undefined": str(tmp_path / "undefined.c"),
    }
    before = set(tmp_path.iterdir())
    ran = livecd("job", *(a.format(**names) for a in args))
    assert ran.exit_code == 2
    lines = ran.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("livecd: error: "), ran.stderr
    assert message in lines[0]
    assert "Traceback" not in ran.output
    assert set(tmp_path.iterdir()) == before  # nothing half-written


def test_no_compiler_is_one_line(livecd: Invoke, tmp_path: Path) -> None:
    ran = livecd(
        "job", "build", FSDITHER_SOURCE, "-o", tmp_path / "x.job", env={"PATH": str(tmp_path)}
    )
    assert ran.exit_code == 2
    assert ran.stderr.strip() == (
        "livecd: error: cc is not installed: run scripts/install-host-packages.sh "
        "(or apt-get install gcc)"
    )


@pytest.mark.parametrize(
    ("text", "size"),
    [("4096", 4096), ("64M", 64 << 20), ("1G", 1 << 30), ("512MiB", 512 << 20), ("2k", 2048)],
)
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size
