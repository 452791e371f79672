"""A job's output costs its seller no more than the memory plan allows: a job writing
16 MiB under the plan's output limit takes the seller's peak RSS up by less than its
reserve, and a job allowed more output than the plan is never leased to it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from polling import until
from seller_processes import StartSeller

from cpushare.seller.plan import JOB_OUTPUT_BYTES, SELLER_RESERVE
from livecd.market_process import MarketProcess
from market.buyer import BuyerClient


@pytest.fixture(scope="module")
def flood(build_test_job: Callable[[Path], bytes]) -> bytes:
    return build_test_job(Path(__file__).resolve().parent / "flood.c")


@pytest.fixture
def market(tmp_path: Path) -> Iterator[MarketProcess]:
    with MarketProcess(tmp_path / "market").start() as process:
        yield process


def _peak_rss(pid: int) -> int:
    """The process's peak resident set (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_a_big_output_stays_within_the_sellers_plan(
    market: MarketProcess, tmp_path: Path, flood: bytes, start_seller: StartSeller
) -> None:
    buyer = BuyerClient(market.url, market.account("lab", coins=100_000).api_key)
    program = buyer.upload_program(flood)
    order = tmp_path / "volunteer.cpu"
    market.account("volunteer")
    market.order("volunteer", order)
    planned = {"output_bytes": JOB_OUTPUT_BYTES}
    seller = start_seller(order, "--output-cap", str(JOB_OUTPUT_BYTES))
    (warm,) = buyer.submit(program, [b"1"], replicas=1, limits=planned)
    until(lambda: buyer.job(warm)["state"] != "open", "the warm-up job to finish")
    pid = int(seller.wait_for("seller-started")[0]["pid"])
    before = _peak_rss(pid)
    # More output than the plan allows: never leased to this seller.
    (big,) = buyer.submit(program, [b"16"], replicas=1, limits={"output_bytes": 16 << 20})
    # 16 MiB written under the plan's limit: cut there, and posted.
    (cut,) = buyer.submit(program, [b"16"], replicas=1, limits=planned)
    until(lambda: buyer.job(cut)["state"] != "open", "the flood job to finish")
    grown = _peak_rss(pid) - before
    assert buyer.job(cut)["outcome"] == "output-limit"
    assert grown < SELLER_RESERVE, f"the peak RSS grew by {grown >> 20} MiB"
    assert buyer.job(big)["state"] == "open" and buyer.job(big)["leased"] == 0
    assert str(big) not in {e["job"] for e in seller.events("job-leased")}
