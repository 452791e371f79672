"""Seller processes for the tests: started, watched through their console, and made
sure to end with the test. (A module of its own, not conftest: test packages each have a
conftest, and `from conftest import` would find whichever was imported first.)"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from polling import until

from cpushare.console import events_in
from cpushare.order import SellOrder
from cpushare.seller.status import SellerStatus, read_statuses
from livecd.orders import write_order


class SellerProcess:
    """`python3 -m cpushare.seller ORDER` with its console captured to a file; from the
    loopback address `source` if given (each address is another machine to the market)."""

    def __init__(self, order: Path, workdir: Path, *extra: str, source: str | None = None) -> None:
        self.order = order
        self.status_dir = workdir / "status"
        self.console = workdir / f"{order.stem}.console"
        argv = [sys.executable, "-m", "cpushare.seller", str(order)]
        argv += ["--status-dir", str(self.status_dir), "--wait", "1", "--backoff-max", "0.4"]
        env = dict(os.environ)
        if source is not None:
            env["CPUSHARE_SOURCE_ADDRESS"] = source
        with open(self.console, "wb") as out:
            self.process = subprocess.Popen(
                [*argv, *extra], stdout=out, stderr=subprocess.STDOUT, env=env
            )

    def events(self, name: str | None = None) -> list[dict[str, str]]:
        return events_in(self.console.read_text(errors="replace"), name)

    def wait_for(self, name: str, count: int = 1, timeout: float = 60) -> list[dict[str, str]]:
        give_up = time.monotonic() + timeout
        while time.monotonic() < give_up:
            found = self.events(name)
            if len(found) >= count:
                return found
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no {count} x {name} in:\n{self.console.read_text()}")

    def stop(self, *, kill: bool = False) -> None:
        if self.process.poll() is None:
            if kill:
                self.process.kill()
            else:
                self.process.terminate()
        self.process.wait(timeout=20)


class StartSeller(Protocol):
    """The `start_seller` fixture: a `SellerProcess` of `order` in the test's folder,
    stopped at the end of the test."""

    def __call__(self, order: Path, *extra: str, source: str | None = None) -> SellerProcess: ...


def stand_in_order(market_url: str, order_id: str, order: Path) -> Path:
    """`order`, written for the order `order_id` (its secret and account made up) of a
    test's stand-in market at `market_url`."""
    write_order(SellOrder(market_url, order_id, "s" * 24, "lab"), order)
    return order


def running(mentioning: str) -> list[int]:
    """Live processes (zombies are dead) whose command line mentions `mentioning`: a
    seller names its order file there, a fleet's forked seller its fleet's run folder."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue  # it ended while we looked
        if mentioning.encode() in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


def outlivers(mentioning: str, timeout: float = 15) -> list[int]:
    """The processes mentioning `mentioning` still running after `timeout` seconds, if
    any, SIGKILLed: whatever a test started ends with it, and the test learns of it."""
    give_up = time.monotonic() + timeout
    while (left := running(mentioning)) and time.monotonic() < give_up:
        time.sleep(0.05)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return left


def statuses_when(
    directory: Path, shows: Callable[[dict[str, SellerStatus]], bool], timeout: float = 10
) -> dict[str, SellerStatus]:
    """The sellers' status files once they show what `shows` looks for: a seller writes
    the counts of results acknowledged while tiny jobs run with the job loop's next
    write, about a second later, not at once (cpushare.seller.agent._written_soon)."""
    return until(
        lambda: statuses if shows(statuses := read_statuses(directory)) else None,
        "the status files to show it",
        timeout,
        0.05,
        lambda: read_statuses(directory),
    )
