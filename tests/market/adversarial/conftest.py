"""The attacker's side: a real market on loopback, raw HTTP, and distinct machines simulated
by distinct loopback source addresses (127.0.0.N)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from livecd.market_process import Host, MarketProcess, source_session
from market.buyer import BuyerClient
from market.dialect import Location


@pytest.fixture
def slow_market(tmp_path: Path, market_location: Location) -> Iterator[MarketProcess]:
    """A market whose leases outlast each test: nothing expires behind an attack's back."""
    process = MarketProcess(tmp_path, db=market_location, lease_seconds=600).start()
    yield process
    process.stop(kill=True)


@dataclass
class Seller:
    """One enrolled host speaking raw HTTP from its own source address."""

    market: MarketProcess
    host: Host

    def post(self, path: str, **body: object) -> requests.Response:
        return source_session(self.host.source).post(
            f"{self.market.url}{path}", json=body, auth=self.host.auth, timeout=30
        )

    def lease(self, seat: int = 0) -> requests.Response:
        return self.post("/v1/lease", wait=0, seat=seat)

    def result(self, lease: int, output: bytes, cpu: float = 1.0) -> requests.Response:
        return self.post(
            f"/v1/leases/{lease}/result",
            outcome="ok",
            exit_status=0,
            output=base64.b64encode(output).decode(),
            cpu_seconds=cpu,
            wall_seconds=cpu,
        )


class Fleet:
    """Sellers on demand: each a new order of `account` enrolled from `source`."""

    def __init__(self, market: MarketProcess, tmp_path: Path) -> None:
        self.market = market
        self.tmp_path = tmp_path
        self.count = 0

    def seller(self, account: str, source: str, seats: int = 1) -> Seller:
        self.count += 1
        order = self.market.order(account, self.tmp_path / f"{account}-{self.count}.cpu")
        return Seller(self.market, self.market.enroll(order, seats=seats, source=source))


@pytest.fixture
def fleet(slow_market: MarketProcess, tmp_path: Path) -> Fleet:
    for name in ("alice", "bob", "carol", "mallory"):
        slow_market.account(name)
    return Fleet(slow_market, tmp_path)


@pytest.fixture
def lab(slow_market: MarketProcess) -> BuyerClient:
    """A buyer with coins."""
    return BuyerClient(slow_market.url, slow_market.account("lab", coins=100_000).api_key)
