"""`livecd sell`: its sellers end with it, stopped or killed, and hand their leases back."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from polling import until
from seller_processes import outlivers, running

from cpushare.console import events_in
from cpushare.seller.host import SEATS_PER_SELLER
from livecd.market_process import MarketProcess
from market import admin
from market.buyer import BuyerClient

LIVECD = [sys.executable, "-c", "from livecd.cli import main; main()"]


Sell = Callable[..., tuple[subprocess.Popen[bytes], Path]]


@pytest.fixture
def sell(tmp_path: Path) -> Iterator[Sell]:
    """Starts `livecd sell ARGS...` with its output in a console file; a process still
    running at the end of the test is killed."""
    started: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> tuple[subprocess.Popen[bytes], Path]:
        console = tmp_path / "sell.console"
        with open(console, "wb") as out:
            started.append(subprocess.Popen([*LIVECD, "sell", *args], stdout=out, stderr=out))
        return started[-1], console

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


def _events(console: Path, name: str) -> list[dict[str, str]]:
    return events_in(console.read_text(), name)


def _wait_for(console: Path, name: str, count: int = 1, timeout: float = 60) -> None:
    until(
        lambda: len(_events(console, name)) >= count,
        f"{count} x {name}",
        timeout,
        0.05,
        console.read_text,
    )


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_stopped_or_killed_livecd_sell_leaves_no_seller_and_its_lease_goes_back(
    tmp_path: Path,
    spin: bytes,
    sell: Sell,
    signum: signal.Signals,
) -> None:
    with MarketProcess(tmp_path, lease_seconds=600).start() as market:
        market.account("volunteer")
        orders = [tmp_path / "first.cpu", tmp_path / "second.cpu"]
        for path in orders:
            market.order("volunteer", path)
        buyer = BuyerClient(market.url, market.account("lab", coins=1_000_000).api_key)
        # Far longer than the test: only a release puts a job back in the queue. Two jobs
        # per seller (the running one and the next): none is left polling for a job
        # released on the way out. replicas=1: this is about stopping, not agreement.
        jobs = buyer.submit(buyer.upload_program(spin), [b"100000"] * 4, replicas=1)
        status = str(tmp_path / "status")
        seller, console = sell(
            *map(str, orders), "--status-dir", status, "--wait", "1", "--backoff-max", "0.4"
        )
        _wait_for(console, "seller-started", 2)
        _wait_for(console, "job-leased", 2)
        sellers = {int(e["pid"]) for e in _events(console, "seller-started")}
        # A seller's child between fork and exec (a job's start) still shows its command
        # line for a moment: what runs is, once it settles, the fleet and its sellers.
        until(
            lambda: (
                {pid for path in orders for pid in running(str(path))} == sellers | {seller.pid}
            ),
            "the fleet and its two sellers alone",
            5,
            0.01,
            lambda: sorted(pid for path in orders for pid in running(str(path))),
        )
        stopped_at = time.monotonic()
        seller.send_signal(signum)
        assert seller.wait(timeout=15) == (143 if signum == signal.SIGTERM else -signum)
        left = [pid for path in orders for pid in outlivers(str(path))]
        assert left == []
        assert time.monotonic() - stopped_at < 6
        assert sorted(int(e["job"]) for e in _events(console, "lease-released")) == jobs
        with sqlite3.connect(market.db) as db:
            rows = db.execute("SELECT job_id, released IS NOT NULL FROM leases")
            assert sorted(rows) == [(job, 1) for job in jobs]
        assert [buyer.job(job)["state"] for job in jobs] == ["open"] * 4
        assert "Traceback" not in console.read_text()


@pytest.fixture
def volunteer(tmp_path: Path) -> Iterator[tuple[MarketProcess, Path]]:
    """A market (10-second leases) and an order of its account `volunteer`, in a file."""
    with MarketProcess(tmp_path, lease_seconds=10).start() as market:
        market.account("volunteer")
        order = tmp_path / "volunteer.cpu"
        market.order("volunteer", order)
        yield market, order


def test_livecd_sell_enrolls_once_per_order_and_hands_the_secret_over_a_pipe(
    tmp_path: Path, sell: Sell, volunteer: tuple[MarketProcess, Path]
) -> None:
    _, order = volunteer
    copy = tmp_path / "volunteer-2.cpu"
    copy.write_bytes(order.read_bytes())
    status = str(tmp_path / "status")
    seller, console = sell(str(order), str(copy), "--status-dir", status, "--wait", "1")
    _wait_for(console, "seller-started", 2)
    (enrolled,) = _events(console, "enrolled")
    assert enrolled["seats"] == str(2 * SEATS_PER_SELLER)  # two sellers
    sellers = [int(e["pid"]) for e in _events(console, "seller-started")]
    # A host secret is a word of 43 characters of URL-safe base64: none in any
    # seller's command line nor in a status file; its environment is ours, no more.
    secret = re.compile(rb"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])")
    for pid in sellers:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        assert b"--host-fd" in cmdline and not secret.search(cmdline)
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        names = {item.partition(b"=")[0] for item in environ if item}
        # (The CLI sets the terminal's size for its own output.)
        assert names - {b"COLUMNS", b"LINES"} <= {name.encode() for name in os.environ}
    for status in (tmp_path / "status").iterdir():
        assert not secret.search(status.read_bytes())
    seller.send_signal(signal.SIGTERM)
    assert seller.wait(timeout=15) == 143


def test_livecd_sell_whose_host_is_revoked_ends_with_one_line_and_no_restart(
    sell: Sell, volunteer: tuple[MarketProcess, Path]
) -> None:
    market, order = volunteer
    seller, console = sell(str(order), "--wait", "1")
    _wait_for(console, "seller-started")
    (enrolled,) = _events(console, "enrolled")
    admin.revoke_host(market.db, enrolled["host"])
    assert seller.wait(timeout=30) == 2
    revoked = [e for e in _events(console, "error") if e["what"] == "revoked"]
    assert len(revoked) == 1
    assert len(_events(console, "seller-started")) == 1
    assert "the market revoked the host of" in console.read_text()
    assert "Traceback" not in console.read_text()
