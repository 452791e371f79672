"""The status screen, drawn from a run folder like the live system's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from cpushare.screen import WIDTH, View, draw, look, market_line, render
from cpushare.seller.status import SellerStatus, StatusFile, boottime


def _seller(run: Path, name: str, **changes: object) -> None:
    status = SellerStatus("o-1", "https://10.0.2.100:8443", account="volunteer")
    StatusFile(run / "status", Path(f"{name}.cpu"), status).update(**changes)


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
    ran = subprocess.run(
        [sys.executable, "-m", "cpushare.screen", "--run", str(run), "--net", str(net), "--once"],
        capture_output=True,
        text=True,
        check=True,
    )
    text = ran.stdout
    assert "selling: 2 seller(s), orders from medium, jobs up to 99 MiB" in text
    assert "account   volunteer" in text and "network   eth0 10.0.2.15/24" in text
    assert "https://10.0.2.100:8443" in text and "reachable (answered" in text
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines() if "-cpu" in line}
    assert rows["volunteer-cpu0"] == ["running", "12", "3", "4.5", "4.500"]
    assert rows["volunteer-cpu1"] == ["backoff", "-", "0", "0.0", "0.000"]
    assert "last error (volunteer-cpu1): market-unreachable: timed out" in text
    assert all(len(line) <= WIDTH for line in text.splitlines())


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
