"""The market SIGKILLed under load and restarted: no acknowledged result lost, none
credited twice, and every job still completes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import requests

from cpushare.jail import JobResult, Outcome
from cpushare.protocol import result_document
from livecd.market_process import Host, MarketProcess, source_session
from market.buyer import BuyerClient
from market.store import connect

JOBS = 240
SELLERS = 16


def _simulated_seller(
    url: str, host: Host, seat: int, acked: list[tuple[int, int, bytes]], stop: threading.Event
) -> None:
    session = source_session(host.source)
    session.auth = host.auth
    while not stop.is_set():
        try:
            reply = session.post(f"{url}/v1/lease", json={"wait": 0.5, "seat": seat}, timeout=10)
            if reply.status_code != 200:
                continue
            lease = reply.json()
            output = f"job {lease['job']} by {host.id}".encode()
            body = result_document(JobResult(Outcome.OK, 0, output, 0.25, 0.25, ""))
            posted = session.post(f"{url}/v1/leases/{lease['lease']}/result", json=body, timeout=10)
            if posted.status_code == 200:
                acked.append((lease["lease"], posted.json()["result"], output))
        except requests.RequestException:
            time.sleep(0.05)


def _wait_for(condition: Callable[[], bool], timeout: float) -> None:
    give_up = time.monotonic() + timeout
    while not condition() and time.monotonic() < give_up:
        time.sleep(0.05)


def test_sigkill_under_load_loses_no_acknowledged_result(
    market: MarketProcess, buyer: BuyerClient, fsdither: bytes, tmp_path: Path
) -> None:
    sha = buyer.upload_program(fsdither)
    # Each job stands on one result: this test is about crashes, not validation.
    buyer.submit(sha, [f"input {i}".encode() for i in range(JOBS)], replicas=1)
    orders = [market.order("lab", tmp_path / f"o{i}.cpu") for i in range(4)]
    hosts = [market.enroll(o, seats=4, source=f"127.0.0.{i + 2}") for i, o in enumerate(orders)]
    acked: list[tuple[int, int, bytes]] = []
    stop = threading.Event()
    sellers = [
        threading.Thread(
            target=_simulated_seller, args=(market.url, hosts[i % 4], i // 4, acked, stop)
        )
        for i in range(SELLERS)
    ]
    for t in sellers:
        t.start()
    _wait_for(lambda: len(acked) >= JOBS // 3, 60)
    market.stop(kill=True)
    acked_before_kill = len(acked)
    time.sleep(0.5)
    market.start()
    _wait_for(lambda: buyer.status()["jobs"]["done"] == JOBS, 90)
    stop.set()
    for t in sellers:
        t.join()
    market.stop()

    assert acked_before_kill >= JOBS // 3
    db = connect(market.db)
    stored = {
        lease: (result, bytes(output))
        for lease, result, output in db.execute("SELECT lease_id, id, output FROM results")
    }
    for lease, result, output in acked:
        assert stored[lease] == (result, output)
    done, accepted, credited, distinct = db.execute(
        "SELECT (SELECT count(*) FROM jobs WHERE state = 'done'), "
        "(SELECT count(*) FROM results WHERE verdict = 'accepted'), "
        "(SELECT count(*) FROM transfers WHERE kind = 'pay'), "
        "(SELECT count(DISTINCT result_id) FROM transfers WHERE kind = 'pay')"
    ).fetchone()
    db.close()
    assert done == JOBS
    assert accepted == credited == distinct == JOBS
