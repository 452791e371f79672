"""The live CD's kernel options: `cpushare.NAME=VALUE` words of the kernel command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from cpushare.bootopts import int_option, kernel_options, read_kernel_options


def test_kernel_options_keep_only_ours_and_the_last_one_wins(
    capsys: pytest.CaptureFixture[str],
) -> None:
    options = kernel_options("quiet cpushare.sellers=2 console=ttyS0 cpushare.sellers=3 cpushare.x")
    assert options == {"sellers": "3"}
    assert int_option(options, "sellers", 1, 8) == 3
    assert int_option(options, "nice", 0, 19) is None
    assert capsys.readouterr().out == ""
    assert int_option({"nice": "20"}, "nice", 0, 19) is None
    assert "cpushare.nice=20 is not a number from 0 to 19" in capsys.readouterr().out
    assert int_option({"nice": "high"}, "nice", 0, 19) is None
    assert "cpushare.nice=high is not a number" in capsys.readouterr().out


def test_a_missing_command_line_has_no_options(tmp_path: Path) -> None:
    assert read_kernel_options(tmp_path / "cmdline") == {}
    (tmp_path / "cmdline").write_text("BOOT_IMAGE=/vmlinuz cpushare.screen=off\n")
    assert read_kernel_options(tmp_path / "cmdline") == {"screen": "off"}
