"""Templates (StrictUndefined, named errors) and the root filesystem's layers."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from diskformats.cpio import Entry
from livecd.errors import BuildError
from livecd.rootfs import merge, overlay
from livecd.templates import render_tree


def test_an_undefined_variable_names_the_template_and_the_variable(tmp_path: Path) -> None:
    (tmp_path / "rootfs" / "etc").mkdir(parents=True)
    (tmp_path / "rootfs" / "etc" / "motd.j2").write_text("line one\n{{ volunteer_name }}\n")
    with pytest.raises(BuildError) as err:
        render_tree("rootfs", {}, tmp_path)
    assert "rootfs/etc/motd.j2:2" in str(err.value)
    assert "'volunteer_name' is undefined" in str(err.value)


def test_a_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "iso").mkdir()
    (tmp_path / "iso" / "x.cfg.j2").write_text("ok\n{% if %}\n")
    with pytest.raises(BuildError, match=r"iso/x.cfg.j2:2"):
        render_tree("iso", {}, tmp_path)


def test_scripts_become_executable(tmp_path: Path) -> None:
    (tmp_path / "rootfs").mkdir()
    (tmp_path / "rootfs" / "run.j2").write_text("#!/bin/sh\necho {{ what }}\n")
    (tmp_path / "rootfs" / "conf.j2").write_text("{{ what }}\n")
    rendered = {r.path: r for r in render_tree("rootfs", {"what": "hi"}, tmp_path)}
    assert rendered["run"].mode == 0o755 and rendered["run"].data == b"#!/bin/sh\necho hi\n"
    assert rendered["conf"].mode == 0o644


def test_an_overlay_link_climbing_out_of_the_root_is_refused(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "shadow").symlink_to("../../etc/shadow")
    with pytest.raises(BuildError, match="points outside the root filesystem"):
        overlay(tmp_path)


def test_absolute_overlay_links_stay_inside_the_image(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "sh").symlink_to("/bin/busybox")
    (tmp_path / "bin" / "ash").symlink_to("sh")
    entries = {e.path: e for e in overlay(tmp_path)}
    assert entries["bin/sh"].data == b"/bin/busybox"
    assert stat.S_ISLNK(entries["bin/ash"].mode)


def test_a_missing_overlay_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match=r"overlay folder .* is missing"):
        overlay(tmp_path / "nope")


def test_later_layers_replace_earlier_ones() -> None:
    a = Entry("etc/x", stat.S_IFREG | 0o644, data=b"package")
    b = Entry("etc/x", stat.S_IFREG | 0o644, data=b"overlay")
    c = Entry("etc/y", stat.S_IFREG | 0o644, data=b"y")
    assert {e.path: e.data for e in merge([a, c], [b])} == {"etc/x": b"overlay", "etc/y": b"y"}
