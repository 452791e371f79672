"""Leases and results with their bytes raw after the document (protocol.BLOBS), on a real
server: asked for by a seller, never sent to a client that did not ask; JSON stays."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import requests

from cpushare.jail import JobResult, Outcome
from cpushare.protocol import (
    BLOBS,
    Blobs,
    parse_leases,
    parse_next,
    parse_recorded_batch,
    results_body,
    split_blobs,
)
from livecd.market_process import Host, MarketProcess, source_session
from market.buyer import BuyerClient

ACCEPT = {"Accept": f"{BLOBS}, application/json"}


def _host(market: MarketProcess, tmp_path: Path, seats: int) -> Host:
    order = market.order("lab", tmp_path / "a.cpu")
    return market.enroll(order, seats=seats, source="127.0.0.2")


def _post(
    market: MarketProcess, host: Host, path: str, body: bytes, headers: dict[str, str]
) -> requests.Response:
    return source_session(host.source).post(
        f"{market.url}{path}", data=body, headers=headers, auth=host.auth, timeout=30
    )


def _lease(market: MarketProcess, host: Host, seats: list[int]) -> requests.Response:
    body = json.dumps({"seats": seats}).encode()
    return _post(market, host, "/v1/leases", body, {**ACCEPT, "Content-Type": "application/json"})


def _blobs_of(reply: requests.Response) -> tuple[dict[str, Any], Blobs]:
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == BLOBS
    head, tail = split_blobs(reply.content)
    doc: dict[str, Any] = json.loads(head)
    return doc, Blobs(tail)


def _result(output: bytes) -> JobResult:
    return JobResult(Outcome.OK, 0, output, 1.0, 1.0, "")


def test_leases_asked_as_blobs_come_with_their_inputs_raw_after_them(
    buyer: BuyerClient, market: MarketProcess, fsdither: bytes, tmp_path: Path
) -> None:
    inputs = [b"\x00\n" * 300, b"", b"\xff" * 5000]
    jobs = buyer.submit(buyer.upload_program(fsdither), inputs, replicas=1)
    host = _host(market, tmp_path, seats=3)
    doc, blobs = _blobs_of(_lease(market, host, [0, 1, 2]))
    assert all("input" not in item for item in doc["leases"])
    offers = parse_leases(doc, [0, 1, 2], blobs)
    assert {o.job: o.input for o in offers} == dict(zip(jobs, inputs, strict=True))


def test_results_posted_as_blobs_are_recorded_byte_for_byte_and_lease_the_next(
    buyer: BuyerClient, market: MarketProcess, fsdither: bytes, tmp_path: Path
) -> None:
    inputs = [b"1", b"2", b"3", b"4"]
    jobs = buyer.submit(buyer.upload_program(fsdither), inputs, replicas=1)
    host = _host(market, tmp_path, seats=3)
    doc, blobs = _blobs_of(_lease(market, host, [0, 1]))
    first = parse_leases(doc, [0, 1], blobs)
    outputs = [b"\n\x00first\n", b"second" * 1000]
    pieces = results_body(
        [(o.lease, _result(out)) for o, out in zip(first, outputs, strict=True)],
        {"seats": [0, 1, 2]},
        blobs=True,
    )
    reply = _post(market, host, "/v1/results", b"".join(pieces), {**ACCEPT, "Content-Type": BLOBS})
    doc, blobs = _blobs_of(reply)
    answers = parse_recorded_batch(doc, [o.lease for o in first])
    assert all(not isinstance(a, Exception) for a in answers.values())
    assert [buyer.output(o.job) for o in first] == outputs
    granted = parse_next(doc, [0, 1, 2], blobs)
    assert isinstance(granted, list)
    by_job = dict(zip(jobs, inputs, strict=True))
    assert sorted(o.job for o in granted) == sorted(set(jobs) - {o.job for o in first})
    assert all(o.input == by_job[o.job] for o in granted)


def test_a_blobs_body_whose_sizes_do_not_add_up_is_refused_whole(
    buyer: BuyerClient, market: MarketProcess, fsdither: bytes, tmp_path: Path
) -> None:
    buyer.submit(buyer.upload_program(fsdither), [b"1"], replicas=1)
    host = _host(market, tmp_path, seats=1)
    doc, blobs = _blobs_of(_lease(market, host, [0]))
    (offer,) = parse_leases(doc, [0], blobs)
    good = b"".join(results_body([(offer.lease, _result(b"out"))], blobs=True))
    for body, error in (
        (good + b"x", "do not add up"),
        (good[:-1], "field 'output_size' is not a size of the bytes that follow"),
        (good.replace(b"\n", b" "), "not a JSON document and its bytes"),
        (good.replace(b'"output_size": 3', b'"output_size": -1'), "is not a size"),
    ):
        reply = _post(market, host, "/v1/results", body, {"Content-Type": BLOBS})
        assert reply.status_code == 400, body
        assert error in reply.json()["error"]
    both = good.replace(b'"output_size"', b'"output": "b3V0", "output_size"')
    answer = _post(market, host, "/v1/results", both, {"Content-Type": BLOBS}).json()
    assert answer["results"][0]["status"] == 400
    assert "in its document and after it" in answer["results"][0]["error"]
    # Nothing was recorded by the refused posts: the right one is the first.
    reply = _post(market, host, "/v1/results", good, {"Content-Type": BLOBS})
    assert reply.headers["content-type"] == "application/json"  # not asked for as blobs
    assert reply.json()["results"][0]["duplicate"] is False
    assert buyer.output(offer.job) == b"out"
