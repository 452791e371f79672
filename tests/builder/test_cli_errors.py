"""Bad input to `livecd build|smoke|boot`: one clear line, non-zero exit, no partial ISO."""

from __future__ import annotations

import io
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from diskformats.compress import compress
from diskformats.cpio import Entry, write_newc
from diskformats.fat import make_fat_image
from livecd.build import BuildResult
from livecd.cli import main
from livecd.errors import InternalError
from livecd.rootfs import OVERLAYS
from livecd.templates import TEMPLATES


def livecd(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env)


def assert_one_line_error(result: Result, fragment: str) -> None:
    assert result.exit_code == 2, result.output
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("livecd: error:")]
    assert len(errors) == 1 and fragment in errors[0], result.stderr
    assert "Traceback" not in result.output


def assert_no_iso(directory: Path) -> None:
    assert not [p for p in directory.iterdir() if p.suffix in (".iso", ".part")]


def test_unknown_package(tmp_path: Path, default_build: BuildResult) -> None:
    profile = tmp_path / "p.toml"
    profile.write_text(
        'name = "t"\noutput = "t.iso"\n[debian]\npackages = ["busybox-static",'
        ' "no-such-package-here"]\n'
    )
    result = livecd("build", "-p", str(profile), "-o", str(tmp_path / "t.iso"))
    assert_one_line_error(result, "unknown package no-such-package-here")
    assert_no_iso(tmp_path)


def test_unreachable_source_with_an_empty_cache(tmp_path: Path) -> None:
    sources = tmp_path / "mirror.list"
    sources.write_text("deb http://127.0.0.1:9/debian bookworm main\n")
    result = livecd(
        "build",
        "--cache",
        str(tmp_path / "cache"),
        "--apt-sources",
        str(sources),
        "-o",
        str(tmp_path / "t.iso"),
    )
    assert_one_line_error(result, "cannot update the Debian package lists")
    assert_no_iso(tmp_path)


def test_template_with_an_undefined_variable(tmp_path: Path, default_build: BuildResult) -> None:
    templates = shutil.copytree(TEMPLATES, tmp_path / "templates")
    init = templates / "rootfs" / "init.j2"
    init.write_text(init.read_text() + "echo {{ no_such_variable }}\n")
    result = livecd("build", "--templates", str(templates), "-o", str(tmp_path / "t.iso"))
    assert_one_line_error(result, "'no_such_variable' is undefined")
    assert "rootfs/init.j2" in result.stderr
    assert_no_iso(tmp_path)


def test_overlay_pointing_outside(tmp_path: Path, default_build: BuildResult) -> None:
    overlays = shutil.copytree(OVERLAYS, tmp_path / "overlays", symlinks=True)
    (overlays / "etc" / "leak").symlink_to("../../../etc/shadow")
    result = livecd("build", "--overlays", str(overlays), "-o", str(tmp_path / "t.iso"))
    assert_one_line_error(result, "points outside the root filesystem")
    assert_no_iso(tmp_path)


def test_missing_overlay_folder(tmp_path: Path, default_build: BuildResult) -> None:
    result = livecd("build", "--overlays", str(tmp_path / "gone"), "-o", str(tmp_path / "t.iso"))
    assert_one_line_error(result, "overlay folder")
    assert_no_iso(tmp_path)


def test_unwritable_output_path(tmp_path: Path, default_build: BuildResult) -> None:
    result = livecd("build", "-o", str(tmp_path / "no" / "such" / "dir" / "t.iso"))
    assert_one_line_error(result, "cannot write to")


def test_source_date_epoch_not_an_integer(tmp_path: Path) -> None:
    result = livecd("build", "-o", str(tmp_path / "t.iso"), env={"SOURCE_DATE_EPOCH": "soon"})
    assert_one_line_error(result, "SOURCE_DATE_EPOCH='soon' is not an integer")
    assert_no_iso(tmp_path)


def test_no_qemu_installed(tmp_path: Path, iso: Path) -> None:
    result = livecd("smoke", str(iso), env={"PATH": str(tmp_path)})
    assert_one_line_error(result, "qemu-system-x86_64 is not installed")


def test_no_ovmf_installed(iso: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("livecd.qemu.machine.OVMF_DIR", tmp_path)
    result = livecd("smoke", str(iso), "--firmware", "uefi")
    assert_one_line_error(result, "is not installed")
    assert "ovmf" in result.stderr


def test_secure_boot_needs_uefi(iso: Path) -> None:
    assert_one_line_error(livecd("smoke", str(iso), "--secure-boot"), "needs UEFI firmware")


def test_job_memory_is_the_market_jobs_limit(iso: Path) -> None:
    result = livecd("smoke", str(iso), "--job-memory", "4")
    assert_one_line_error(result, "--job-memory is the --market jobs' limit")


def test_missing_iso(tmp_path: Path) -> None:
    assert_one_line_error(livecd("boot", str(tmp_path / "none.iso")), "no such ISO")


def test_overlay_file_where_the_templates_have_a_folder(
    tmp_path: Path, default_build: BuildResult
) -> None:
    # A file where templates/rootfs has a folder: the cpio writer's refusal reaches the
    # user as their mistake, naming the path.
    overlays = shutil.copytree(OVERLAYS, tmp_path / "overlays", symlinks=True)
    (overlays / "etc" / "init.d").write_text("not a folder\n")
    result = livecd("build", "--overlays", str(overlays), "-o", str(tmp_path / "t.iso"))
    assert_one_line_error(result, "etc/init.d: is not a directory but etc/init.d/")
    assert_no_iso(tmp_path)


def test_source_date_epoch_beyond_what_cpio_holds(tmp_path: Path) -> None:
    result = livecd("build", "-o", str(tmp_path / "t.iso"), "--source-date-epoch", str(1 << 32))
    assert_one_line_error(result, "SOURCE_DATE_EPOCH 4294967296 is out of range")
    assert_no_iso(tmp_path)


@pytest.fixture
def buggy_command() -> Iterator[str]:
    """A command on the real group whose code hands each format something it refuses, as a
    bug in the builder would: the group must call that a bug, in one line."""

    @click.command("buggy")
    @click.argument("fmt")
    def buggy(fmt: str) -> None:
        if fmt == "cpio":
            write_newc([Entry("/absolute", stat.S_IFREG | 0o644)], io.BytesIO(), mtime=0)
        elif fmt == "fat":
            make_fat_image({"a:b": b""}, label="EFI", volume_id=1, mtime=0)
        else:
            compress(b"data", "gzip", 99)

    main.add_command(buggy)
    try:
        yield "buggy"
    finally:
        del main.commands["buggy"]


@pytest.mark.parametrize("fmt", ["cpio", "fat", "compress"])
def test_a_format_refusing_the_builders_own_data_is_reported_as_a_bug(
    buggy_command: str, fmt: str
) -> None:
    result = livecd(buggy_command, fmt)
    assert result.exit_code == InternalError.exit_code, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("livecd: bug: internal error: "), lines
    assert "please report it" in lines[0] and "Traceback" not in result.output
    verbose = livecd("-v", buggy_command, fmt)
    assert verbose.exit_code == InternalError.exit_code
    assert "Traceback (most recent call last)" in verbose.stderr
    assert verbose.stderr.splitlines()[-1] == lines[0]
