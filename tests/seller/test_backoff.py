"""The back-off: its delays alone, and the seller's loop pausing by them while the market
is away (a real closed port, then a real market on it), its sleeps recorded."""

from __future__ import annotations

import io
import random
from pathlib import Path

from cpushare.order import load_order
from cpushare.seller.agent import Seller
from cpushare.seller.backoff import Backoff
from cpushare.seller.options import SellerOptions
from cpushare.seller.status import boottime, read_status
from livecd.market_process import MarketProcess


def test_backoff_grows_to_its_cap_with_jitter_and_resets() -> None:
    backoff = Backoff(base=1, cap=8, rng=random.Random(1))
    delays = [backoff.next_delay() for _ in range(12)]
    bounds = [1, 2, 4, 8] + [8] * 8
    assert all(b / 10 <= d <= b for d, b in zip(delays, bounds, strict=True))
    assert len(set(delays)) == len(delays)
    backoff.reset()
    assert backoff.next_delay() <= 1


def test_the_default_jitter_spreads_within_the_window() -> None:
    # Drawn from os.urandom (no random module in the live system): 200 delays within the
    # cap's window, spread over it rather than stuck at one end.
    backoff = Backoff(base=8, cap=8)
    delays = [backoff.next_delay() for _ in range(200)]
    assert all(0.8 <= d <= 8 for d in delays)
    assert min(delays) < 2.5 and max(delays) > 6.3 and len(set(delays)) == 200


def _in_bounds(delays: list[float], first_bound: float = 1.0) -> bool:
    """Whether each delay lies within its doubling bound's jitter window."""
    bounds = [first_bound * 2**i for i in range(len(delays))]
    return all(b / 10 <= d <= b for d, b in zip(delays, bounds, strict=True))


def test_the_seller_waits_longer_each_time_the_market_is_away_and_short_once_it_answered(
    tmp_path: Path,
) -> None:
    market = MarketProcess(tmp_path).start()
    market.account("lab")
    market.order("lab", tmp_path / "lab.cpu")
    market.stop()
    slept: list[float] = []
    console = io.StringIO()
    options = SellerOptions(status_dir=tmp_path / "status", wait=0.2, backoff_max=60)
    seller = Seller(load_order(tmp_path / "lab.cpu"), tmp_path / "lab.cpu", options, console,
                    sleep=slept.append)  # fmt: skip
    try:
        for attempt in range(6):
            seller.serve_once()
            assert len(slept) == attempt + 1, console.getvalue()
            status = read_status(tmp_path / "status" / "lab.json")
            assert status is not None and status.state == "backoff"
            # It promises its next word for when the pause is over.
            assert abs(status.stale_after - (boottime() + slept[-1])) < 1
        assert console.getvalue().count("what=market-unreachable") == 6
        # Bounds 1, 2, 4 ... 32 s: the sixth pause is longer than any first could be.
        assert _in_bounds(slept) and slept[5] > 1 >= slept[0]

        market.start()
        seller.serve_once()  # answered: no job (204), no pause
        assert len(slept) == 6
        market.stop()
        seller.serve_once()
        assert len(slept) == 7 and slept[6] <= 1  # short again after an answer
    finally:
        market.stop(kill=True)
        seller.client.close()
