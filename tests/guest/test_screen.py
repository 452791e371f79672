"""The status screen, drawn from a run folder like the live system's."""

from __future__ import annotations

import fcntl
import os
import re
import struct
import subprocess
import sys
import termios
import unicodedata
from pathlib import Path

import pytest

from cpushare.screen import (
    DEFAULT_COLUMNS,
    FRAME,
    Painter,
    View,
    draw,
    look,
    market_line,
    render,
    terminal_width,
)
from cpushare.seller.status import SellerStatus, StatusFile, boottime


def _seller(run: Path, name: str, **changes: object) -> None:
    status = SellerStatus("o-1", "https://10.0.2.100:8443", account="volunteer")
    StatusFile(run / "status", Path(f"{name}.cpu"), status).update(**changes)


def _once(run: Path, net: Path, columns: int | None = None) -> str:
    """One frame as `python3 -m cpushare.screen --once` prints it (on no terminal: the
    width comes from COLUMNS, if set)."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    if columns is not None:
        env["COLUMNS"] = str(columns)
    ran = subprocess.run(
        [sys.executable, "-m", "cpushare.screen", "--run", str(run), "--net", str(net), "--once"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    return ran.stdout


def _columns(line: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in line)


def _view(**sellers: SellerStatus) -> View:
    return View("CPUShare live CD 1.0", "selling", [], dict(sellers), now=1000.0)


def test_one_frame_shows_version_account_address_market_and_each_seller(tmp_path: Path) -> None:
    run, net = tmp_path / "run", tmp_path / "net"
    net.mkdir()
    (net / "eth0.addr").write_text("10.0.2.15/24\n")
    run.mkdir()
    (run / "state").write_text("selling: 2 seller(s), orders from medium, jobs up to 99 MiB\n")
    _seller(run, "volunteer-cpu0", state="running", job=12, jobs_done=3, cpu_seconds=4.5,
            coins=4.5, market_seen=round(boottime(), 1))  # fmt: skip
    _seller(run, "volunteer-cpu1", state="backoff", last_error="market-unreachable: timed out")
    text = _once(run, net)
    assert "selling: 2 seller(s), orders from medium, jobs up to 99 MiB" in text
    assert "account   volunteer" in text and "network   eth0 10.0.2.15/24" in text
    assert "https://10.0.2.100:8443" in text and "reachable (answered" in text
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines() if "-cpu" in line}
    assert rows["volunteer-cpu0"] == ["running", "12", "3", "4.5", "4.500"]
    assert rows["volunteer-cpu1"] == ["backoff", "-", "0", "0.0", "0.000"]
    assert "last error (volunteer-cpu1): market-unreachable: timed out" in text
    assert all(len(line) < DEFAULT_COLUMNS for line in text.splitlines())


def test_the_market_line_follows_the_sellers_last_exchanges() -> None:
    fresh = SellerStatus("o", "m", market_seen=990.0)
    old = SellerStatus("o", "m", market_seen=100.0, last_error="market-unreachable: no route")
    refused = SellerStatus("o", "m", last_error="market-refused: HTTP 401: bad secret")
    assert market_line(_view(a=fresh, b=old)).startswith("reachable (answered 10 s ago)")
    assert market_line(_view(b=old)) == "unreachable: no route"
    assert market_line(_view(c=refused)) == "refuses: HTTP 401: bad secret"
    assert market_line(_view()) == "not asked yet"


def test_a_system_with_nothing_yet_still_draws_a_frame(tmp_path: Path) -> None:
    view = look(tmp_path / "run", tmp_path / "net", tmp_path / "release")
    lines = render(view)
    assert lines[1] == "starting" and "no address yet" in lines[4]
    frame = draw(lines)
    assert frame.startswith("\033[H") and frame.endswith("\033[J")
    assert frame.count("\033[K\n") == len(lines)


HOSTILE = (
    "market-refused: HTTP 400: \r\n\x1b[2J\x1b[31mPAY NOW\x1b]0;title\x07 \x9b1m"
    "cpushare: event=poweroff \u202e\x00 " + "\u5e02\u573a" * 3000
)


@pytest.mark.parametrize("columns", [40, None, 132])
def test_hostile_text_is_cut_or_wrapped_to_the_width_and_stripped(
    tmp_path: Path, columns: int | None
) -> None:
    run, net = tmp_path / "run", tmp_path / "net"
    net.mkdir()
    (net / "eth0.addr").write_text("10.0.2.15/24 \x1b[5m" + "9" * 500 + "\n")
    run.mkdir()
    (run / "state").write_text("selling \x1b[?25l" + "s" * 300 + "\n")
    _seller(run, "\u5e02" * 40, state="backoff", last_error=HOSTILE)
    text = _once(run, net, columns)
    columns = columns or DEFAULT_COLUMNS  # on no terminal and no COLUMNS: the default
    lines = text.splitlines()
    assert lines and all(_columns(line) <= columns - 1 for line in lines)
    assert max(_columns(line) for line in lines) == columns - 1  # the width is used
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202e]", text)
    errors = [i for i, line in enumerate(lines) if line.startswith("last error")]
    assert len(errors) == 1
    wrapped = lines[errors[0] : errors[0] + 3]
    assert "PAY NOW" in " ".join(wrapped) and wrapped[-1].endswith("...")
    assert not lines[errors[0] + 3], "a long error is wrapped onto three lines at most"
    assert "[2J" not in text and "title" not in text and "[31m" not in text
    # The frame around the lines: only the screen's own escapes.
    view = look(run, net)
    frame = draw(render(view, columns - 1))
    assert set(re.findall(r"\x1b\[[0-?]*[ -/]*[@-~]", frame)) == {"\x1b[H", "\x1b[K", "\x1b[J"}
    assert frame.count("\x1b") == frame.count("\x1b[H") + frame.count("\x1b[K") + 1


def test_the_width_is_the_terminals_less_its_last_column(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "132")
    assert terminal_width() == 131
    monkeypatch.setenv("COLUMNS", "5")
    assert terminal_width() == 20  # a console that claims less still gets a legible frame


def _pty(columns: int) -> tuple[int, int]:
    """A pseudo-terminal `columns` wide: (controller, terminal) descriptors."""
    controller, terminal = os.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 30, columns, 0, 0))
    return controller, terminal


def test_the_painter_writes_whole_frames_cut_to_its_terminals_width(tmp_path: Path) -> None:
    run, net = tmp_path / "run", tmp_path / "net"
    net.mkdir()
    run.mkdir()
    (run / "state").write_text("selling " + "s" * 300 + "\n")
    _seller(run, "volunteer-cpu0", state="backoff", last_error=HOSTILE)
    controller, terminal = _pty(100)
    try:
        painter = Painter(run, Path(os.ttyname(terminal)), net)
        painter.paint()
    finally:
        os.close(terminal)
        os.close(controller)
    frame = (run / FRAME).read_text()
    assert frame.startswith("\x1b[H") and frame.endswith("\x1b[J")
    lines = frame.removeprefix("\x1b[H").removesuffix("\x1b[J").split("\x1b[K\n")[:-1]
    assert lines[1] == "selling " + "s" * (99 - len("selling "))
    assert all(_columns(line) <= 99 for line in lines) and "PAY NOW" in frame
    assert [p.name for p in run.iterdir() if p.name.startswith(".")] == []
    # Within REFRESH_SECONDS a tick keeps the frame; a paint does not wait.
    (run / "state").write_text("stopped\n")
    painter.tick()
    assert "\x1b[K\nstopped\x1b[K\n" not in (run / FRAME).read_text()
    painter.paint()
    assert "\x1b[K\nstopped\x1b[K\n" in (run / FRAME).read_text()


def test_a_terminal_that_cannot_be_asked_gets_the_default_width(tmp_path: Path) -> None:
    assert terminal_width(tmp_path / "no-such-tty") == DEFAULT_COLUMNS - 1
    (tmp_path / "file").write_text("")
    assert terminal_width(tmp_path / "file") == DEFAULT_COLUMNS - 1


def test_a_fleet_that_cannot_sell_paints_why(tmp_path: Path) -> None:
    run, orders = tmp_path / "run", tmp_path / "orders"
    orders.mkdir()
    (tmp_path / "cmdline").write_text("quiet cpushare.selftest=fail\n")
    controller, terminal = _pty(40)
    try:
        argv = [sys.executable, "-m", "cpushare.seller.fleet", str(run), "--orders", str(orders)]
        argv += ["--cmdline", str(tmp_path / "cmdline"), "--screen", os.ttyname(terminal)]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    finally:
        os.close(terminal)
        os.close(controller)
    assert done.returncode == 1, done.stdout + done.stderr
    frame = (run / FRAME).read_text()
    assert "\x1b[K\nnot selling: strict seccomp does not wo\x1b[K\n" in frame
