"""A seller started alone enrolls itself, waits out a 429's Retry-After, and enrolls
again once when the market no longer knows its host."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import ClassVar

import pytest
from loopback_http import serving
from polling import until
from seller_processes import StartSeller, stand_in_order

from cpushare.seller.host import SEATS_PER_SELLER
from livecd.market_process import MarketProcess
from livecd.sdk.dither import dither, sample_image
from market.buyer import BuyerClient


def test_a_seller_whose_host_the_market_forgot_enrolls_again_and_works(
    tmp_path: Path,
    market: MarketProcess,
    buyer: BuyerClient,
    fsdither: bytes,
    start_seller: StartSeller,
) -> None:
    market.account("alice")
    market.order("alice", tmp_path / "alice.cpu")
    seller = start_seller(tmp_path / "alice.cpu")
    first = seller.wait_for("enrolled")[0]["host"]
    # The market reset: its hosts are gone, the order is still good.
    with sqlite3.connect(market.db) as db:
        db.execute("DELETE FROM hosts")
    second = seller.wait_for("enrolled", 2)[1]["host"]
    assert second != first
    assert [e["what"] for e in seller.events("error")] == ["unknown-host"]
    # replicas=1: this is about enrolling again, not about agreement.
    image = sample_image(12, 12)
    job = buyer.submit(buyer.upload_program(fsdither), [image], replicas=1)[0]
    seller.wait_for("job-finished")  # printed as the job ends, before its result is posted
    until(
        lambda: buyer.job(job)["state"] == "done",
        "the job's result",
        30,
        0.05,
        lambda: buyer.job(job),
    )
    assert buyer.output(job) == dither(image)


def test_a_seller_told_to_wait_by_a_429_waits_that_long(
    tmp_path: Path, market: MarketProcess, start_seller: StartSeller
) -> None:
    market.account("alice")
    order = market.order("alice", tmp_path / "alice.cpu")
    # An enrollment flood from 127.0.0.5 used up its allowance: the market answers 429
    # with Retry-After, far longer than this seller's own back-off (0.4 s at most).
    while True:
        try:
            market.enroll(order, source="127.0.0.5")
        except RuntimeError as exc:
            assert "429" in str(exc)
            break
    seller = start_seller(tmp_path / "alice.cpu", source="127.0.0.5")
    enrolled = seller.wait_for("enrolled", timeout=60)[0]
    busy = [e for e in seller.events("error") if e["what"] == "market-busy"]
    assert busy and "429" in busy[0]["detail"]
    assert float(enrolled["uptime"]) - float(busy[0]["uptime"]) >= 4.5
    assert len(busy) <= 2


ENROLLED = {"host": "host-1", "secret": "k" * 43, "seats": SEATS_PER_SELLER, "order": "o-forgotten"}


class ForgetfulMarket(BaseHTTPRequestHandler):
    """Enrolls anyone, then knows no host: every lease request is a 401."""

    enrollments: ClassVar[int] = 0

    def log_message(self, *_: object) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path == "/v1/hosts":
            type(self).enrollments += 1
            status, body = 201, json.dumps(ENROLLED).encode()
        else:
            status, body = 401, b'{"error": "unknown host"}'
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def forgetful() -> Iterator[str]:
    ForgetfulMarket.enrollments = 0
    with serving(ForgetfulMarket) as url:
        yield url


def test_a_host_unknown_right_after_enrolling_again_is_an_error_not_a_loop(
    forgetful: str, tmp_path: Path, start_seller: StartSeller
) -> None:
    seller = start_seller(stand_in_order(forgetful, "o-forgotten", tmp_path / "f.cpu"))
    seller.wait_for("error", 6)
    whats = [e["what"] for e in seller.events("error")]
    assert whats[0] == "unknown-host" and set(whats[1:]) == {"market-refused"}
    assert ForgetfulMarket.enrollments == 2
    assert seller.process.poll() is None
