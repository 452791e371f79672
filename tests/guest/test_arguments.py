"""`cpushare.arguments`: the fleet's command line without argparse, with argparse's words."""

from __future__ import annotations

from pathlib import Path

import pytest

from cpushare.arguments import Argument, parse


def _number(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(f"{text} is less than 0")
    return value


ARGUMENTS = [
    Argument("rundir", Path, "where", positional=True),
    Argument("count", _number, "how many", 1, metavar="N"),
    Argument("path", Path, "a path", "/default", metavar="PATH"),
    Argument("hang_grace", float, "seconds", None),
]


def test_positionals_options_and_defaults() -> None:
    args = parse("prog", "Does things.", ARGUMENTS, ["/run", "--count", "3", "--hang-grace=2.5"])
    assert args.rundir == Path("/run") and args.count == 3 and args.hang_grace == 2.5
    assert args.path == Path("/default")  # a default given as text is converted
    args = parse("prog", "", ARGUMENTS, ["--path=/p", "/r"])
    assert (args.rundir, args.count, args.path, args.hang_grace) == (
        Path("/r"),
        1,
        Path("/p"),
        None,
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["/r", "--count", "-1"], "argument --count: -1 is less than 0"),
        (["/r", "--count", "x"], "argument --count: invalid literal for int() with base 10: 'x'"),
        (["/r", "--count"], "argument --count: expected one argument"),
        (["/r", "--what", "1"], "unrecognized arguments: --what"),
        (["/r", "/s"], "unrecognized arguments: /s"),
        ([], "the following arguments are required: RUNDIR"),
    ],
)
def test_a_bad_command_line_is_the_usage_and_one_error_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        parse("prog", "", ARGUMENTS, argv)
    assert stopped.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("usage: prog [-h] [--count N]") and err[0].endswith(" RUNDIR")
    assert err[1:] == [f"prog: error: {message}"]


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        parse("prog", "Does things.", ARGUMENTS, ["/r", "--help"])
    assert stopped.value.code == 0
    out = capsys.readouterr().out
    assert "Does things." in out and "--hang-grace HANG_GRACE" in out and "how many" in out
