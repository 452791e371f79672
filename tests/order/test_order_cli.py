"""`livecd order new|check|fetch`: written files, every problem on one line, fetch refuses junk."""

from __future__ import annotations

from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from loopback_http import serving

from cpushare.order import load_order
from livecd.cli import main


def _new(runner: CliRunner, out: Path, *extra: str) -> Result:
    return runner.invoke(
        main,
        [
            "order",
            "new",
            "--market-url",
            "https://m.example.org",
            "--order-id",
            "o-abcd",
            "--secret",
            "s" * 20,
            "--account",
            "lab",
            "--cert-sha256",
            "ab" * 32,
            "-o",
            str(out),
            *extra,
        ],
    )


def test_new_writes_an_order_that_checks(tmp_path: Path) -> None:
    runner = CliRunner()
    result = _new(runner, tmp_path / "lab.cpu", "--nice", "10")
    assert result.exit_code == 0, result.output
    assert load_order(tmp_path / "lab.cpu").nice == 10
    assert (tmp_path / "lab.cpu").stat().st_mode & 0o777 == 0o600
    check = runner.invoke(main, ["order", "check", str(tmp_path / "lab.cpu")])
    assert check.exit_code == 0 and "ok: order o-abcd for lab" in check.output


def test_new_refuses_bad_values_and_writes_nothing(tmp_path: Path) -> None:
    result = _new(CliRunner(), tmp_path / "lab.cpu", "--nice", "25")
    assert result.exit_code == 2
    assert "seller.nice is 25" in result.output
    assert not list(tmp_path.iterdir())


def test_check_names_every_problem_on_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.cpu"
    bad.write_text('format = 1\n[order]\nid = "x"\n')
    result = CliRunner().invoke(main, ["order", "check", str(bad)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"livecd: error: {bad}: ")
    for needle in ("market.url is missing", "order.id 'x' is malformed", "order.secret is missing"):
        assert needle in lines[0]


@pytest.fixture
def web(tmp_path: Path) -> Iterator[str]:
    handler = lambda *a: SimpleHTTPRequestHandler(*a, directory=str(tmp_path))  # noqa: E731
    with serving(handler) as url:
        yield url


def test_fetch_keeps_a_valid_order_and_refuses_anything_else(web: str, tmp_path: Path) -> None:
    runner = CliRunner()
    _new(runner, tmp_path / "good.cpu")
    (tmp_path / "junk.cpu").write_text("<html>not an order</html>")
    out = tmp_path / "out"
    out.mkdir()
    ok = runner.invoke(main, ["order", "fetch", f"{web}/good.cpu", "-o", str(out / "a.cpu")])
    assert ok.exit_code == 0, ok.output
    assert (out / "a.cpu").read_bytes() == (tmp_path / "good.cpu").read_bytes()
    junk = runner.invoke(main, ["order", "fetch", f"{web}/junk.cpu", "-o", str(out / "b.cpu")])
    assert junk.exit_code == 2 and "is not a valid sell order, nothing written" in junk.output
    missing = runner.invoke(main, ["order", "fetch", f"{web}/nope.cpu", "-o", str(out / "c.cpu")])
    assert missing.exit_code == 2 and "HTTP 404" in missing.output
    assert sorted(p.name for p in out.iterdir()) == ["a.cpu"]
