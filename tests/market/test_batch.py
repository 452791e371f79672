"""Batch leasing and batch results on a real server, on each engine: a lease per seat in
one request, several results in one post, each answered on its own."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import requests

from cpushare.jail import JobResult, Outcome
from cpushare.protocol import (
    LeaseOffer,
    parse_leases,
    parse_next,
    parse_recorded_batch,
    result_document,
)
from cpushare.replies import Refused
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


def _lease(market: MarketProcess, host: Host, seats: list[int]) -> list[LeaseOffer]:
    """The leases `host` is given in one request for its `seats`."""
    return parse_leases(_post(market, host, "/v1/leases", {"seats": seats}).json(), seats)


def _result(lease: object, output: bytes = b"out") -> dict[str, Any]:
    return {"lease": lease, **result_document(JobResult(Outcome.OK, 0, output, 1.0, 1.0, ""))}


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
    again = _lease(market, host, [2])
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
    assert len(_lease(market, host, [0, 1])) == 2


def test_a_batch_of_results_answers_each_on_its_own(
    buyer: BuyerClient, market: MarketProcess, fsdither: bytes, tmp_path: Path
) -> None:
    jobs = buyer.submit(buyer.upload_program(fsdither), [b"1", b"2"], replicas=1)
    host = _host(market, tmp_path, seats=2, name="honest")
    other = _host(market, tmp_path, seats=1, name="other")
    offers = _lease(market, host, [0, 1])
    buyer.submit(buyer.upload_program(fsdither), [b"3"], replicas=1)
    theirs = _lease(market, other, [0])
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


def _results_next(
    market: MarketProcess, host: Host, results: list[dict[str, Any]], ahead: object
) -> dict[str, Any]:
    reply = _post(market, host, "/v1/results", {"results": results, "next": ahead})
    assert reply.status_code == 200
    doc: dict[str, Any] = reply.json()
    return doc


def test_results_and_the_next_leases_go_in_one_request(
    buyer: BuyerClient, market: MarketProcess, fsdither: bytes, tmp_path: Path
) -> None:
    jobs = buyer.submit(buyer.upload_program(fsdither), [b"1", b"2", b"3", b"4"], replicas=1)
    host = _host(market, tmp_path, seats=3)
    first = _lease(market, host, [0, 1])
    done = [_result(offer.lease) for offer in first]
    # The seats of the results just posted are asked for again, with a free one: two jobs
    # are left for the three seats.
    doc = _results_next(market, host, done, {"seats": [0, 1, 2], "max_output_bytes": 1 << 20})
    answers = parse_recorded_batch(doc, [offer.lease for offer in first])
    assert all(not isinstance(a, Exception) for a in answers.values())
    assert {buyer.job(offer.job)["state"] for offer in first} == {"done"}
    granted = parse_next(doc, [0, 1, 2])
    assert isinstance(granted, list) and len(granted) == 2
    assert sorted(offer.job for offer in granted) == sorted(set(jobs) - {o.job for o in first})
    # The new leases are the host's own, as any: their results go through.
    again = _results_next(market, host, [_result(o.lease) for o in granted], {"seats": [0]})
    assert [a["status"] for a in again["results"]] == [200, 200]
    assert again["next"] == {"leases": []}  # no job left
    assert {buyer.job(job)["state"] for job in jobs} == {"done"}
    # Without `next`, the reply is the old one.
    plain = _post(market, host, "/v1/results", {"results": [_result(first[0].lease)]}).json()
    assert set(plain) == {"results"} and plain["results"][0]["duplicate"] is True


def test_a_bad_lease_request_beside_results_loses_none_of_them(
    buyer: BuyerClient, market: MarketProcess, fsdither: bytes, tmp_path: Path
) -> None:
    program = buyer.upload_program(fsdither)
    jobs = buyer.submit(program, [b"1", b"2"], replicas=1)
    host = _host(market, tmp_path, seats=2)
    (offer,) = _lease(market, host, [0])
    for ahead, status, error in (
        ({"seats": [0, 2]}, 400, "seat 2 is not one of this host's"),
        ({"seats": [1, 1]}, 400, "names a seat twice"),
        ({"seats": []}, 400, "at least one seat"),
        ({"seat": 0}, 400, "field 'seats' is missing"),
        ({"seats": [0], "max_memory_bytes": -1}, 400, "'max_memory_bytes' must be between"),
        ([0, 1], 400, "field 'next' must be a lease request"),
    ):
        doc = _results_next(market, host, [_result(offer.lease)], ahead)
        assert doc["results"][0]["status"] == 200, ahead
        assert doc["next"]["status"] == status and error in doc["next"]["error"], doc
        refused = parse_next(doc, [0, 1])
        assert isinstance(refused, Refused) and refused.status == status
    assert buyer.job(offer.job)["state"] == "done"
    # Nothing was leased by the refused lease requests: the other job is still there.
    (left,) = _lease(market, host, [0, 1])
    assert left.job == (set(jobs) - {offer.job}).pop()


def test_next_leases_keep_to_the_sellers_bounds(
    buyer: BuyerClient, market: MarketProcess, fsdither: bytes, tmp_path: Path
) -> None:
    program = buyer.upload_program(fsdither)
    (small,) = buyer.submit(program, [b"1"], replicas=1, limits={"memory_bytes": 1 << 20})
    big = buyer.submit(program, [b"2"], replicas=1, limits={"output_bytes": 4 << 20})
    host = _host(market, tmp_path, seats=3)
    (offer,) = _lease(market, host, [0])
    assert offer.job == small
    bounds = {"max_memory_bytes": 1 << 30, "max_cpu_seconds": 600, "max_output_bytes": 1 << 20}
    doc = _results_next(market, host, [_result(offer.lease)], {"seats": [0, 1], **bounds})
    assert doc["next"] == {"leases": []}  # the job left may write more than 1 MiB
    bounds["max_output_bytes"] = 4 << 20
    bounds["max_memory_bytes"] = 1 << 20
    doc = _results_next(market, host, [_result(offer.lease)], {"seats": [0, 1], **bounds})
    assert doc["next"] == {"leases": []}  # nor within 1 MiB of memory (it wants 256)
    bounds["max_memory_bytes"] = 1 << 30
    doc = _results_next(market, host, [_result(offer.lease)], {"seats": [0, 1], **bounds})
    assert [o.job for o in parse_next(doc, [0, 1]) or []] == big


def test_a_seat_whose_result_was_not_acknowledged_keeps_its_lease(
    buyer: BuyerClient, market: MarketProcess, fsdither: bytes, tmp_path: Path
) -> None:
    jobs = buyer.submit(buyer.upload_program(fsdither), [b"1", b"2", b"3", b"4"], replicas=1)
    host = _host(market, tmp_path, seats=2)
    first = _lease(market, host, [0, 1])
    by_seat = {offer.seat: offer for offer in first}
    broken = {**_result(by_seat[0].lease), "outcome": "lied"}  # refused: not a result
    doc = _results_next(market, host, [broken, _result(by_seat[1].lease)], {"seats": [0, 1]})
    assert [a["status"] for a in doc["results"]] == [400, 200]
    granted = parse_next(doc, [1])  # a lease on seat 0 would not parse
    assert isinstance(granted, list) and [o.seat for o in granted] == [1]
    # Seat 0's lease was not handed back: its result, posted right, is still taken.
    doc = _results_next(market, host, [_result(by_seat[0].lease)], {"seats": [0]})
    assert doc["results"][0]["status"] == 200 and doc["results"][0]["duplicate"] is False
    assert buyer.job(by_seat[0].job)["state"] == "done"
    assert [o.seat for o in parse_next(doc, [0]) or []] == [0]
    assert len({buyer.job(job)["state"] for job in jobs}) == 2  # done, and two leased


def test_a_seat_whose_result_is_refused_while_recording_keeps_its_lease(
    buyer: BuyerClient, market: MarketProcess, fsdither: bytes, tmp_path: Path
) -> None:
    buyer.submit(buyer.upload_program(fsdither), [b"1", b"2", b"3"], replicas=1)
    host = _host(market, tmp_path, seats=2)
    first = parse_leases(_post(market, host, "/v1/leases", {"seats": [0, 1]}).json(), [0, 1])
    by_seat = {offer.seat: offer for offer in first}
    # Well-formed, but larger than the job's output limit: refused once its lease is read.
    large = _result(by_seat[0].lease, b"x" * ((1 << 20) + 1))
    doc = _results_next(market, host, [large, _result(by_seat[1].lease)], {"seats": [0, 1]})
    assert [a["status"] for a in doc["results"]] == [413, 200]
    granted = parse_next(doc, [1])
    assert isinstance(granted, list) and [o.seat for o in granted] == [1]
    doc = _results_next(market, host, [_result(by_seat[0].lease)], {"seats": [0]})
    assert doc["results"][0]["status"] == 200 and doc["results"][0]["duplicate"] is False
