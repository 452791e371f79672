"""Fixtures shared across test packages: the jail's environment, one real build of the
default profile, and a real market on loopback with a real job for the market and seller tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from livecd import toolchain
from livecd.build import BuildOptions, BuildResult, build
from livecd.market_process import MarketProcess
from livecd.profile import load_profile
from livecd.toolchain import FSDITHER_SOURCE, build_job
from market.buyer import BuyerClient

EPOCH = 1_700_000_000


@pytest.fixture(scope="session", autouse=True)
def jail_on_this_host() -> None:
    """Point the guest's jail (and every seller a test starts) at the toolchain's builds
    of the loader and self-test job, as the image has them at fixed paths."""
    for name, value in toolchain.jail_environment().items():
        os.environ.setdefault(name, value)


@pytest.fixture(scope="session")
def default_build(tmp_path_factory: pytest.TempPathFactory) -> BuildResult:
    """The default profile, built once (no menu delay, fixed SOURCE_DATE_EPOCH). The first
    run downloads the Debian packages into the user's cache; later runs use the cache."""
    out = tmp_path_factory.mktemp("iso") / "live.iso"
    profile = load_profile().with_overrides(timeout=0)
    return build(BuildOptions(profile=profile, output=out, source_date_epoch=EPOCH))


@pytest.fixture(scope="session")
def iso(default_build: BuildResult) -> Path:
    return default_build.iso


@pytest.fixture(scope="session")
def fsdither(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The Floyd-Steinberg reference job, built with the SDK."""
    out = tmp_path_factory.mktemp("jobs") / "fsdither.job"
    return build_job([FSDITHER_SOURCE], out).read_bytes()


@pytest.fixture
def market(tmp_path: Path) -> Iterator[MarketProcess]:
    """A running market with 2-second leases."""
    process = MarketProcess(tmp_path, lease_seconds=2).start()
    yield process
    process.stop(kill=True)


@pytest.fixture
def buyer(market: MarketProcess) -> BuyerClient:
    """A client for a fresh account `lab`, granted coins to buy with."""
    return BuyerClient(market.url, market.account("lab", coins=1_000_000).api_key)
