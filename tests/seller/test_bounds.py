"""A hostile market's numbers do not park a seller: lease_seconds, Retry-After and a
request never answered all leave it asking again within bounds of its own."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import ClassVar

import pytest
from loopback_http import serving
from polling import until
from seller_processes import StartSeller, stand_in_order
from test_hostile import GOOD_LEASE

from cpushare.limits import MAX_EXTEND_INTERVAL, MAX_EXTEND_SECONDS, MAX_RETRY_AFTER
from cpushare.order import SellOrder
from cpushare.protocol import MAX_LEASE_SECONDS, parse_lease
from cpushare.replies import Unreachable
from cpushare.seller.client import MarketClient, _retry_after
from cpushare.seller.courier import Courier, extend_schedule
from cpushare.seller.host import SEATS_PER_SELLER

BACKOFF_MAX = 0.4  # what SellerProcess gives every seller
WAIT, REQUEST_TIMEOUT = 1.0, 1.0
# Room for a loaded machine: two cores shared with other work.
MARGIN = 5.0


DRIP = "drip"  # a step that answers a byte every DRIP_SECONDS for DRIP_FOR seconds
DRIP_SECONDS, DRIP_FOR = 0.25, 20.0
Step = tuple[int, dict[str, str], bytes] | str | None
# Every seller enrolls first (`cpushare.seller.host`): the scripted market lets it in.
ENROLLED = {
    "host": "host-bounds",
    "secret": "h" * 43,
    "seats": SEATS_PER_SELLER,
    "order": "o-bounds",
}
RETRY_AFTER = 2.0


class ScriptedMarket(BaseHTTPRequestHandler):
    """Answers successive requests as `script` says, then 204; notes when each came.
    A step of None is never answered (until the test ends); DRIP starts a long reply and
    sends it a byte at a time, each well within any read timeout, then gives up."""

    script: ClassVar[list[Step]] = []
    arrivals: ClassVar[list[tuple[str, float]]] = []
    release: ClassVar[threading.Event] = threading.Event()

    def log_message(self, *_: object) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path == "/v1/hosts":
            body = json.dumps(ENROLLED).encode()
            self.send_response(201)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.arrivals.append((self.path, time.monotonic()))
        step = self.script.pop(0) if self.script else (204, {}, b"")
        if step is None:
            self.release.wait()
            return
        if step == DRIP:
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            give_up = time.monotonic() + DRIP_FOR
            while time.monotonic() < give_up and not self.release.wait(DRIP_SECONDS):
                self.wfile.write(b" ")
                self.wfile.flush()
            return
        assert isinstance(step, tuple)
        status, headers, body = step
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def market() -> Iterator[str]:
    ScriptedMarket.arrivals = []
    ScriptedMarket.release = threading.Event()
    with serving(ScriptedMarket) as url:
        yield url
        ScriptedMarket.release.set()


def test_extension_waits_are_bounded_whatever_the_lease_says() -> None:
    for lease_seconds in (1.0, 30.0, 3600.0, float(MAX_LEASE_SECONDS), 1e9):
        interval, timeout = extend_schedule(lease_seconds)
        assert 0 < interval <= min(lease_seconds / 3, MAX_EXTEND_INTERVAL)
        assert 5.0 <= timeout <= MAX_EXTEND_SECONDS
    # The bounds are sane: an extension and its wait fit well within the longest lease.
    assert MAX_EXTEND_INTERVAL + MAX_EXTEND_SECONDS < MAX_LEASE_SECONDS / 3


def test_a_dripped_reply_ends_at_the_exchange_deadline(market: str) -> None:
    ScriptedMarket.script = [DRIP]
    client = MarketClient(SellOrder(market, "o-drip", "s" * 24, "lab"), timeout=1.0, exchange=3.0)
    started = time.monotonic()
    with pytest.raises(Unreachable, match="no whole reply within 3 s"):
        client.request_json("POST", "/v1/lease", {})
    assert 3.0 <= time.monotonic() - started <= 3.0 + MARGIN
    # The connection was cut and is made anew: the next request is answered.
    assert client.request_json("POST", "/v1/lease", {}) is None
    client.close()


@pytest.mark.parametrize("step", [None, DRIP], ids=["silent", "dripping"])
def test_an_unanswered_extension_holds_the_connection_no_longer_than_its_timeout(
    market: str, step: Step
) -> None:
    ScriptedMarket.script = [step]  # the first extension is never answered whole
    order = SellOrder(market, "o-keeper", "s" * 24, "lab")
    offer = parse_lease({**GOOD_LEASE, "lease_seconds": 3})
    interval, timeout = extend_schedule(offer.lease_seconds)
    client = MarketClient(order, 30.0, (ENROLLED["host"], ENROLLED["secret"]))
    errors: list[tuple[str, str]] = []
    courier = Courier(
        client, [0, 1], lambda o: o, lambda *_: None, lambda w, d: errors.append((w, str(d))), 1, 1
    )
    courier.hold(offer)
    until(lambda: errors, "the extension's error", interval + timeout + MARGIN, 0.05)
    assert ScriptedMarket.arrivals[0][0] == "/v1/leases/7/extend"
    assert errors and errors[0][0] == "extend"
    assert time.monotonic() - ScriptedMarket.arrivals[0][1] <= timeout + MARGIN
    # Silent, the read's timeout or the exchange's (the same here) ends it first.
    detail = errors[0][1]
    assert "no whole reply" in detail or (step is None and "timed out" in detail)
    # The seller's one connection is free again: the job loop's next request goes through.
    assert client.request_json("POST", "/v1/leases", {}) is None
    assert courier.close() == [offer]  # still held: the seller hands it back on its way out
    client.close()


def _lease(**changes: object) -> tuple[int, dict[str, str], bytes]:
    body = json.dumps({"leases": [{**GOOD_LEASE, **changes}]}).encode()
    return 200, {"Content-Type": "application/json"}, body


def test_huge_lease_seconds_retry_after_and_silence_do_not_park_the_seller(
    market: str, tmp_path: Path, start_seller: StartSeller
) -> None:
    ScriptedMarket.script = [
        _lease(lease_seconds=10**9),
        (503, {"Retry-After": "999999"}, b'{"error": "come back next month"}'),
        (429, {"Retry-After": f"{RETRY_AFTER:g}"}, b'{"error": "slow down"}'),
        None,  # accepted, never answered
    ]
    order = tmp_path / "bounds.cpu"
    seller = start_seller(
        stand_in_order(market, "o-bounds", order), "--request-timeout", str(REQUEST_TIMEOUT)
    )
    errors = seller.wait_for("error", 4)
    until(lambda: len(ScriptedMarket.arrivals) >= 5, "five requests", 30, 0.05)
    times = [at for path, at in ScriptedMarket.arrivals if path == "/v1/leases"]
    assert len(times) >= 5, ScriptedMarket.arrivals
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # After a bad lease and a 503 (Retry-After: 999999 s): the seller's own backoff; after a
    # 429, the pause it asks for (bounded: see the test below).
    assert all(gap <= BACKOFF_MAX + MARGIN for gap in gaps[:2]), gaps
    assert RETRY_AFTER - 0.2 <= gaps[2] <= RETRY_AFTER + BACKOFF_MAX + MARGIN, gaps
    # After silence: its own request timeout (the lease wait and a margin), then backoff.
    assert gaps[3] >= WAIT + REQUEST_TIMEOUT - 0.2, gaps
    assert gaps[3] <= WAIT + REQUEST_TIMEOUT + BACKOFF_MAX + MARGIN, gaps
    details = [(e["what"], e["detail"]) for e in errors[:4]]
    assert details[0][0] == "bad-reply" and "lease_seconds" in details[0][1]
    assert details[1][0] == "market-unreachable" and "HTTP 503" in details[1][1]
    assert details[2][0] == "market-busy" and "HTTP 429" in details[2][1]
    assert details[3][0] == "market-unreachable" and "timed out" in details[3][1]
    assert seller.process.poll() is None


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("2", 2.0),
        ("999999", MAX_RETRY_AFTER),
        ("-5", 0.0),
        ("nan", 0.0),
        ("soon", 0.0),
        (None, 0.0),
    ],
)
def test_retry_after_is_honoured_up_to_the_contracts_bound(
    header: str | None, seconds: float
) -> None:
    assert _retry_after(header) == seconds
    assert MAX_RETRY_AFTER <= 300
