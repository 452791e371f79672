"""Fixtures for the market tests: a real market process on loopback and a real job."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cpushare.market.client import MarketClient
from cpushare.market.harness import MarketProcess
from livecd.jobs import build_job

JOBS = Path(__file__).resolve().parents[2] / "cpushare" / "jobs"


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
