"""A seller hands a lease back: its job is leased again at once, not at the deadline."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from livecd.market_process import Host, MarketProcess
from market.buyer import BuyerClient
from market.dialect import Location
from market.store import connect

RESULT = {"outcome": "ok", "exit_status": 0, "output": "", "cpu_seconds": 1, "wall_seconds": 1}


@pytest.fixture
def slow_market(tmp_path: Path, market_location: Location) -> Iterator[MarketProcess]:
    """A market whose leases last long enough that only a release can requeue a job."""
    process = MarketProcess(tmp_path, db=market_location, lease_seconds=600).start()
    yield process
    process.stop(kill=True)


def _post(market: MarketProcess, host: Host, path: str, **body: object) -> requests.Response:
    return requests.post(f"{market.url}{path}", json=body, auth=host.auth, timeout=30)


def test_a_released_lease_requeues_its_job_at_once_for_the_same_host(
    slow_market: MarketProcess, fsdither: bytes, tmp_path: Path
) -> None:
    buyer = BuyerClient(slow_market.url, slow_market.account("lab", coins=10_000).api_key)
    order = slow_market.enroll(slow_market.order("lab", tmp_path / "lab.cpu"), seats=2)
    job = buyer.submit(buyer.upload_program(fsdither), [b"in"], replicas=1)[0]
    first = _post(slow_market, order, "/v1/lease", wait=0, seat=0).json()
    assert _post(slow_market, order, "/v1/lease", wait=0, seat=1).status_code == 204
    released = _post(slow_market, order, f"/v1/leases/{first['lease']}/release")
    assert released.status_code == 200
    assert released.json() == {"lease": first["lease"], "released": True}
    again = _post(slow_market, order, "/v1/lease", wait=0, seat=1).json()
    assert again["job"] == job and again["lease"] != first["lease"]
    db = connect(slow_market.db)
    state, when = db.execute(
        "SELECT state, released FROM leases WHERE id = ?", (first["lease"],)
    ).fetchone()
    db.close()
    assert state == "expired" and when is not None
    late = _post(slow_market, order, f"/v1/leases/{first['lease']}/result", **RESULT)
    assert late.status_code == 410


def test_a_lease_cannot_be_released_twice_after_its_result_or_by_another_host(
    slow_market: MarketProcess, fsdither: bytes, tmp_path: Path
) -> None:
    buyer = BuyerClient(slow_market.url, slow_market.account("lab", coins=10_000).api_key)
    owner = slow_market.enroll(slow_market.order("lab", tmp_path / "owner.cpu"))
    other = slow_market.enroll(slow_market.order("lab", tmp_path / "other.cpu"))
    buyer.submit(buyer.upload_program(fsdither), [b"one", b"two"], replicas=1)
    lease = _post(slow_market, owner, "/v1/lease", wait=0, seat=0).json()["lease"]
    assert _post(slow_market, other, f"/v1/leases/{lease}/release").status_code == 403
    assert _post(slow_market, owner, f"/v1/leases/{lease}/release").status_code == 200
    assert _post(slow_market, owner, f"/v1/leases/{lease}/release").status_code == 410
    done = _post(slow_market, owner, "/v1/lease", wait=0, seat=0).json()["lease"]
    assert _post(slow_market, owner, f"/v1/leases/{done}/result", **RESULT).status_code == 200
    refused = _post(slow_market, owner, f"/v1/leases/{done}/release")
    assert refused.status_code == 409 and "already has its result" in refused.json()["error"]
    assert _post(slow_market, owner, "/v1/leases/999999/release").status_code == 404
