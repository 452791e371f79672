"""Fixtures for the market tests: a real market process on loopback and a real job."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from livecd.market_process import MarketProcess
from livecd.toolchain import FSDITHER_SOURCE, build_job
from market.client import MarketClient

JOBS = FSDITHER_SOURCE.parent


@pytest.fixture(scope="session")
def fsdither(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The Floyd-Steinberg reference job, built with the SDK."""
    out = tmp_path_factory.mktemp("jobs") / "fsdither.job"
    return build_job([JOBS / "fsdither.c"], out).read_bytes()


@pytest.fixture
def market(tmp_path: Path) -> Iterator[MarketProcess]:
    """A running market with 2-second leases."""
    process = MarketProcess(tmp_path, lease_seconds=2).start()
    yield process
    process.stop(kill=True)


@pytest.fixture
def buyer(market: MarketProcess) -> MarketClient:
    """A client for a fresh account `lab`."""
    return MarketClient(market.url, market.account("lab").api_key)
