"""Batch leasing and batch results on a real server, on each engine: a lease per seat in
one request, several results in one post, each answered on its own."""

from __future__ import annotations

import base64
import threading
import time
from pathlib import Path
from typing import Any

import requests

from cpushare.protocol import parse_leases, parse_recorded_batch
from cpushare.seller.client import Refused
from livecd.market_process import Host, MarketProcess, source_session
from market.buyer import BuyerClient

WAIT = 30.0


def _host(market: MarketProcess, tmp_path: Path, seats: int, name: str = "a") -> Host:
    order = market.order("lab", tmp_path / f"{name}.cpu")
    number = len(list(tmp_path.glob("*.cpu"))) + 1
    return market.enroll(order, seats=seats, source=f"127.0.0.{number}")


def _post(market: MarketProcess, host: Host, path: str, body: Any) -> requests.Response:
    return source_session(host.source).post(
        f"{market.url}{path}", json=body, auth=host.auth, timeout=WAIT + 10
    )


def _result(lease: object, output: bytes = b"out") -> dict[str, Any]:
    return {
        "lease": lease,
        "outcome": "ok",
        "exit_status": 0,
        "output": base64.b64encode(output).decode(),
        "cpu_seconds": 1.0,
        "wall_seconds": 1.0,
    }


def test_one_request_leases_a_job_per_seat_as_far_as_jobs_go(
    buyer: BuyerClient, market: MarketProcess, fsdither: bytes, tmp_path: Path
) -> None:
    jobs = buyer.submit(buyer.upload_program(fsdither), [b"1", b"2", b"3"], replicas=1)
    host = _host(market, tmp_path, seats=4)
    reply = _post(market, host, "/v1/leases", {"seats": [0, 2, 3, 1]})
    assert reply.status_code == 200
    offers = parse_leases(reply.json(), [0, 1, 2, 3])
    assert [o.seat for o in offers] == [0, 2, 3]  # three jobs: the fourth seat gets none
    assert sorted(o.job for o in offers) == jobs
    assert _post(market, host, "/v1/leases", {"seats": [1]}).status_code == 204
    # Asking again on a seat hands its lease back, as on /v1/lease: seat 2's job is free.
    again = parse_leases(_post(market, host, "/v1/leases", {"seats": [2]}).json(), [2])
    assert [o.job for o in again] == [offers[1].job]
    gone = _post(market, host, "/v1/results", {"results": [_result(offers[1].lease)]})
    assert gone.json()["results"][0]["status"] == 410


def test_a_batch_lease_long_polls_for_the_first_job(
    buyer: BuyerClient, market: MarketProcess, fsdither: bytes, tmp_path: Path
) -> None:
    program = buyer.upload_program(fsdither)
    host = _host(market, tmp_path, seats=2)
    replies: list[requests.Response] = []
    waiter = threading.Thread(
        target=lambda: replies.append(
            _post(market, host, "/v1/leases", {"seats": [0, 1], "wait": WAIT})
        )
    )
    started = time.monotonic()
    waiter.start()
    time.sleep(0.5)
    job = buyer.submit(program, [b"in"], replicas=1)[0]
    waiter.join()
    assert time.monotonic() - started < WAIT
    offers = parse_leases(replies[0].json(), [0, 1])
    assert [(o.job, o.seat) for o in offers] == [(job, 0)]


def test_bad_seat_lists_are_refused_whole(
    buyer: BuyerClient, market: MarketProcess, fsdither: bytes, tmp_path: Path
) -> None:
    buyer.submit(buyer.upload_program(fsdither), [b"1", b"2"], replicas=1)
    host = _host(market, tmp_path, seats=2)
    for seats, error in (
        ([0, 2], "seat 2 is not one of this host's: seats go from 0 to 1"),
        ([-1], "seat -1 is not one of this host's"),
        ([1, 1], "names a seat twice"),
        ([], "at least one seat"),
        ([0, "1"], "must be a list of seat numbers"),
        ([True], "must be a list of seat numbers"),
        ([2**70], "is not one of this host's"),
    ):
        reply = _post(market, host, "/v1/leases", {"seats": seats})
        assert reply.status_code == 400, seats
        assert error in reply.json()["error"]
    missing = _post(market, host, "/v1/leases", {"seat": 0})
    assert missing.json() == {"error": "field 'seats' is missing"}
    # Nothing was leased by the refused requests: both jobs are still there.
    assert (
        len(parse_leases(_post(market, host, "/v1/leases", {"seats": [0, 1]}).json(), [0, 1])) == 2
    )


def test_a_batch_of_results_answers_each_on_its_own(
    buyer: BuyerClient, market: MarketProcess, fsdither: bytes, tmp_path: Path
) -> None:
    jobs = buyer.submit(buyer.upload_program(fsdither), [b"1", b"2"], replicas=1)
    host = _host(market, tmp_path, seats=2, name="honest")
    other = _host(market, tmp_path, seats=1, name="other")
    offers = parse_leases(_post(market, host, "/v1/leases", {"seats": [0, 1]}).json(), [0, 1])
    buyer.submit(buyer.upload_program(fsdither), [b"3"], replicas=1)
    theirs = parse_leases(_post(market, other, "/v1/leases", {"seats": [0]}).json(), [0])
    body = {
        "results": [
            _result(offers[0].lease, b"first"),
            _result(theirs[0].lease),  # another host's lease
            {**_result(offers[1].lease), "outcome": "lied"},  # not a result
            _result(10**9),  # no such lease
            "nonsense",
            _result(offers[1].lease, b"second"),
            _result(offers[0].lease, b"first"),  # the same result again
        ]
    }
    reply = _post(market, host, "/v1/results", body)
    assert reply.status_code == 200
    answers = reply.json()["results"]
    assert [a["status"] for a in answers] == [200, 403, 400, 404, 400, 200, 200]
    assert "belongs to another host" in answers[1]["error"]
    assert answers[0]["duplicate"] is False or answers[6]["duplicate"] is False
    assert answers[0]["duplicate"] is not answers[6]["duplicate"]
    assert {buyer.job(j)["state"] for j in jobs} == {"done"}
    assert buyer.output(jobs[0]) + buyer.output(jobs[1]) in (b"firstsecond", b"secondfirst")
    # The other host's lease is untouched by the refusal: its own post goes through.
    mine = _post(market, other, "/v1/results", {"results": [_result(theirs[0].lease)]})
    parsed = parse_recorded_batch(mine.json(), [theirs[0].lease])
    assert not isinstance(parsed[theirs[0].lease], Exception)


def test_a_batch_of_results_is_bounded_and_must_be_a_list(
    buyer: BuyerClient, market: MarketProcess, tmp_path: Path
) -> None:
    host = _host(market, tmp_path, seats=1)
    assert _post(market, host, "/v1/results", {"results": []}).status_code == 400
    too_many = {"results": [_result(i + 1) for i in range(257)]}
    assert "1 to 256" in _post(market, host, "/v1/results", too_many).json()["error"]
    assert _post(market, host, "/v1/results", {"results": "x"}).status_code == 400
    answers = parse_recorded_batch(
        _post(market, host, "/v1/results", {"results": [_result(5)]}).json(), [5]
    )
    assert isinstance(answers[5], Refused) and answers[5].status == 404
