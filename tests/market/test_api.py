"""The market's HTTP API on a real server: auth, bad input, long-poll, leases, results."""

from __future__ import annotations

import base64
import json
import threading
import time
from pathlib import Path

import pytest
import requests

from cpushare.jail import JobResult, Outcome
from cpushare.protocol import result_document
from livecd.market_process import Host, MarketProcess, source_session
from market import openapi_downloads
from market.app import MarketConfig, create_app, openapi_document
from market.buyer import BuyerClient
from market.openapi import OPERATIONS, UndocumentedRoute, document

# A long poll's wait in these tests: far longer than any wake-up may take.
WAIT = 30.0


def _seller(market: MarketProcess, tmp_path: Path, account: str = "lab") -> Host:
    """A host enrolled with a new order of `account`, from a loopback address of its own."""
    count = len(list(tmp_path.glob("*.cpu")))
    order = market.order(account, tmp_path / f"{account}-{count}.cpu")
    return market.enroll(order, seats=2, source=f"127.0.0.{count + 2}")


def _lease(market: MarketProcess, host: Host, wait: float = 0, seat: int = 0) -> requests.Response:
    return source_session(host.source).post(
        f"{market.url}/v1/lease",
        json={"wait": wait, "seat": seat},
        auth=host.auth,
        timeout=WAIT + 10,
    )


def _result(market: MarketProcess, host: Host, lease: int, output: bytes) -> requests.Response:
    body = result_document(JobResult(Outcome.OK, 0, output, 1.5, 1.6, ""))
    return source_session(host.source).post(
        f"{market.url}/v1/leases/{lease}/result", json=body, auth=host.auth, timeout=30
    )


def test_requests_without_or_with_wrong_credentials_are_refused(
    market: MarketProcess, buyer: BuyerClient, tmp_path: Path
) -> None:
    url = f"{market.url}/v1/status"
    assert requests.get(url, timeout=5).status_code == 401
    wrong = requests.get(url, headers={"Authorization": "Bearer nope"}, timeout=5)
    assert wrong.status_code == 401 and wrong.json() == {"error": "unknown API key"}
    host = _seller(market, tmp_path)
    as_seller = requests.get(url, auth=host.auth, timeout=5)
    assert as_seller.status_code == 403
    bad_secret = requests.post(
        f"{market.url}/v1/lease", json={}, auth=(host.id, "x" * 43), timeout=5
    )
    assert bad_secret.status_code == 401
    assert "wrong secret" in bad_secret.json()["error"]


def test_invalid_and_oversized_programs_are_refused(
    buyer: BuyerClient, market: MarketProcess
) -> None:
    headers = {"Authorization": buyer.session.headers["Authorization"]}
    not_elf = requests.put(
        f"{market.url}/v1/programs", data=b"#!/bin/sh\n", headers=headers, timeout=5
    )
    assert not_elf.status_code == 400
    assert not_elf.json()["error"].startswith("not a valid job program:")
    huge = requests.put(
        f"{market.url}/v1/programs", data=b"\0" * ((16 << 20) + 1), headers=headers, timeout=30
    )
    assert huge.status_code == 413
    assert "larger than" in huge.json()["error"]


def test_bad_json_and_wrong_types_get_json_errors(
    buyer: BuyerClient, market: MarketProcess, fsdither: bytes
) -> None:
    headers = {"Authorization": buyer.session.headers["Authorization"]}
    sha = buyer.upload_program(fsdither)
    cases = [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (json.dumps({"program": sha, "inputs": "x"}).encode(), "'inputs' must be a list"),
        (json.dumps({"program": sha, "inputs": ["***"]}).encode(), "not valid base64"),
        (json.dumps({"program": sha, "inputs": [""], "replicas": 0}).encode(), "replicas is 0"),
        (json.dumps({"program": "0" * 64, "inputs": [""]}).encode(), "no program"),
    ]
    for body, message in cases:
        reply = requests.post(f"{market.url}/v1/jobs", data=body, headers=headers, timeout=5)
        assert reply.status_code in (400, 404), body
        assert message in reply.json()["error"], (body, reply.json())
    assert buyer.status()["jobs"] == {"open": 0, "done": 0, "failed": 0}


def test_long_poll_lease_wakes_up_when_a_job_is_submitted(
    buyer: BuyerClient, market: MarketProcess, fsdither: bytes, tmp_path: Path
) -> None:
    host = _seller(market, tmp_path)
    assert _lease(market, host).status_code == 204
    program = buyer.upload_program(fsdither)
    replies: list[tuple[float, requests.Response]] = []

    def poll() -> None:
        reply = _lease(market, host, wait=WAIT, seat=1)
        replies.append((time.monotonic(), reply))

    poller = threading.Thread(target=poll)
    poller.start()
    # The market counts the poller as seen once its long poll has begun (the event that
    # wakes it is taken by then): from there on the submit below has a seller to wake.
    give_up = time.monotonic() + 10
    while buyer.status()["seats_seen"] < 2 and time.monotonic() < give_up:
        time.sleep(0.01)
    # Two seats of one machine under one order: counted apart.
    seen = buyer.status()
    assert (seen["seats_seen"], seen["machines_seen"], seen["orders_seen"]) == (2, 1, 1), seen
    submitted = time.monotonic()
    job = buyer.submit(program, [b"P5\n1 1\n255\n\x80"], replicas=1)[0]
    poller.join()
    woken, reply = replies[0]
    assert reply.status_code == 200
    # Woken by the submit, not by the end of the wait.
    assert woken - submitted < WAIT / 10
    lease = reply.json()
    assert lease["job"] == job
    assert base64.b64decode(lease["input"]) == b"P5\n1 1\n255\n\x80"
    program = requests.get(f"{market.url}{lease['program']['url']}", auth=host.auth, timeout=5)
    assert program.content == fsdither


def test_results_are_idempotent_and_credited_once(
    buyer: BuyerClient, market: MarketProcess, fsdither: bytes, tmp_path: Path
) -> None:
    host = _seller(market, tmp_path)
    # One trusted seller: this test is about idempotence, not validation.
    job = buyer.submit(buyer.upload_program(fsdither), [b"in"], replicas=1)[0]
    lease = _lease(market, host).json()["lease"]
    first = _result(market, host, lease, b"out").json()
    second = _result(market, host, lease, b"other").json()
    assert first["verdict"] == "accepted" and first["coins"] == 1.5
    assert second == {**first, "duplicate": True}
    assert buyer.output(job) == b"out"
    assert buyer.job(job)["state"] == "done"
    # The seller's account is the buyer's: paid 1.5 coins back from its reservation.
    assert buyer.status()["coins"] == {"lab": 1_000_000}


def test_a_cancelled_job_ends_its_lease_and_returns_its_coins(
    buyer: BuyerClient, market: MarketProcess, fsdither: bytes, tmp_path: Path
) -> None:
    host = _seller(market, tmp_path)
    before = buyer.status()["coins"]["lab"]
    job = buyer.submit(buyer.upload_program(fsdither), [b"in"])[0]
    assert buyer.status()["coins"]["lab"] < before  # reserved
    lease = _lease(market, host).json()["lease"]
    buyer.cancel(job)
    assert buyer.status()["coins"]["lab"] == before
    assert buyer.job(job)["state"] == "failed"
    assert _result(market, host, lease, b"late").status_code == 410


def test_a_seller_cannot_use_another_hosts_lease(
    buyer: BuyerClient, market: MarketProcess, fsdither: bytes, tmp_path: Path
) -> None:
    owner, intruder = _seller(market, tmp_path), _seller(market, tmp_path)
    buyer.submit(buyer.upload_program(fsdither), [b"in"], replicas=1)
    lease = _lease(market, owner).json()["lease"]
    stolen = _result(market, intruder, lease, b"forged")
    assert stolen.status_code == 403
    assert stolen.json() == {"error": f"lease {lease} belongs to another host"}
    extend = requests.post(f"{market.url}/v1/leases/{lease}/extend", auth=intruder.auth, timeout=5)
    assert extend.status_code == 403
    assert _result(market, owner, lease, b"real").status_code == 200


def test_an_expired_lease_is_refused_and_its_job_goes_to_another_seller(
    buyer: BuyerClient, market: MarketProcess, fsdither: bytes, tmp_path: Path
) -> None:
    slow, fast = _seller(market, tmp_path), _seller(market, tmp_path)
    job = buyer.submit(buyer.upload_program(fsdither), [b"in"], replicas=1)[0]
    lease = _lease(market, slow).json()["lease"]
    # The 2-second lease runs out while `fast` waits; the sweep hands the job over.
    again = _lease(market, fast, wait=20).json()
    assert again["job"] == job
    late = _result(market, slow, lease, b"late")
    assert late.status_code == 410
    assert _result(market, fast, again["lease"], b"on time").json()["verdict"] == "accepted"


def test_the_served_document_is_built_from_the_routes(market: MarketProcess) -> None:
    served = requests.get(f"{market.url}/v1/openapi.json", timeout=5).json()
    assert served == openapi_document()
    app = create_app(MarketConfig(db=Path("unused.db")))
    # The API's routes (the web portal's pages are not part of the API document).
    routes = {
        (route.path, method.lower())  # type: ignore[attr-defined]
        for route in app.routes
        if route.path.startswith("/v1/")  # type: ignore[attr-defined]
        for method in route.methods  # type: ignore[attr-defined]
        if method != "HEAD"
    }
    documented = {(path, method) for path, ops in served["paths"].items() for method in ops}
    assert routes == documented
    # No operation is left over from a route that is gone.
    operations = {**OPERATIONS, **openapi_downloads.OPERATIONS}
    assert {(path, method.lower()) for path, method in operations} == routes


def test_a_route_without_an_operation_stops_the_document() -> None:
    with pytest.raises(UndocumentedRoute, match="DELETE /v1/jobs"):
        document([("/v1/jobs", "DELETE")], (1, 1), 1.0)
