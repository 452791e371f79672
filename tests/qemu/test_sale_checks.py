"""The sale's checks against a real market, with a seller on the host dialling loopback
instead of a guest: they pass for honest results and catch wrong ones."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cpushare.record import replace
from livecd.orders import write_order
from livecd.qemu.sale_checks import coin_problems, result_problems
from livecd.qemu.sale_market import SaleMarket, build_fsdither, guest_market, job_inputs


@pytest.fixture
def market(tmp_path: Path) -> Iterator[SaleMarket]:
    with guest_market(tmp_path / "market", lease_seconds=6) as process:
        yield SaleMarket.open(process.start())


def _sell_until_done(
    tmp_path: Path, market: SaleMarket, count: int
) -> dict[int, dict[str, object]]:
    """A seller on the host sells to `market` until `count` jobs are done; their infos."""
    write_order(replace(market.order, market_url=market.process.url), tmp_path / "host.cpu")
    seller = subprocess.Popen(
        [sys.executable, "-m", "cpushare.seller", str(tmp_path / "host.cpu"), "--wait", "1"],
        stdout=subprocess.DEVNULL,
    )
    try:
        give_up = time.monotonic() + 60
        while len(done := market.done()) < count:
            assert time.monotonic() < give_up
            time.sleep(0.1)
        return done
    finally:
        seller.kill()
        seller.wait()


def test_the_order_names_the_market_as_the_guest_dials_it(market: SaleMarket) -> None:
    assert market.order.market_url == "https://10.0.2.100:8443"
    assert market.order.account == "volunteer"
    assert (market.forward.guest_addr, market.forward.guest_port) == ("10.0.2.100", 8443)
    assert market.forward.host_port == market.process.port


def test_the_checks_pass_for_honest_results_and_catch_wrong_ones(
    tmp_path: Path, market: SaleMarket
) -> None:
    inputs = job_inputs(3)
    # replicas=1: one seller on the host, whose results the checks judge.
    jobs = market.submit(build_fsdither(tmp_path), inputs, replicas=1)
    done = _sell_until_done(tmp_path, market, 3)
    assert result_problems(market, dict(zip(jobs, inputs, strict=True)), done) == []
    assert coin_problems(market, done) == []
    swapped = dict(zip(jobs, reversed(inputs), strict=True))
    assert len(result_problems(market, swapped, done)) == 2
    fewer = dict(list(done.items())[1:])  # it holds more than these jobs earned
    assert "volunteer holds" in coin_problems(market, fewer)[0]


def test_with_the_validator_beside_it_a_sellers_results_are_accepted_by_agreement(
    tmp_path: Path, market: SaleMarket
) -> None:
    inputs = job_inputs(3)
    jobs = market.submit(build_fsdither(tmp_path), inputs)  # adaptive: two machines each
    with market.validator(tmp_path):
        done = _sell_until_done(tmp_path, market, 3)
    assert result_problems(market, dict(zip(jobs, inputs, strict=True)), done) == []
    assert coin_problems(market, done) == []
    assert all(info["results"] == 2 for info in done.values())
    assert market.coins()["validator"] > 0
