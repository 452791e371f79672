"""Reading another account's program by its sha256: refused to other accounts and to
sellers without a lease on a job that runs it, with the same 404 as a missing program
(its existence is not revealed); allowed to its owner and, while the lease lasts, to the
seller that must run it."""

from __future__ import annotations

import base64
from pathlib import Path

import requests

from livecd.market_process import MarketProcess
from market.buyer import BuyerClient

RESULT = {"outcome": "ok", "exit_status": 0, "cpu_seconds": 1.0, "wall_seconds": 1.0}


def _get(market: MarketProcess, sha256: str, auth: object) -> requests.Response:
    headers = {"Authorization": f"Bearer {auth}"} if isinstance(auth, str) else {}
    basic = auth if isinstance(auth, tuple) else None
    return requests.get(
        f"{market.url}/v1/programs/{sha256}", headers=headers, auth=basic, timeout=10
    )


def test_program_read_across_accounts_is_refused(market: MarketProcess, fsdither: bytes) -> None:
    owner = market.account("lab").api_key
    mallory = market.account("mallory").api_key
    sha256 = BuyerClient(market.url, owner).upload_program(fsdither)
    stranger = _get(market, sha256, mallory)
    missing = _get(market, "0" * 64, mallory)
    assert stranger.status_code == missing.status_code == 404
    # Word for word the refusal of a program that does not exist.
    assert stranger.json()["error"] == missing.json()["error"].replace("0" * 64, sha256)
    assert _get(market, sha256, owner).content == fsdither


def test_program_read_by_a_seller_needs_a_lease_on_it(
    market: MarketProcess, buyer: BuyerClient, fsdither: bytes, tmp_path: Path
) -> None:
    market.account("volunteer")
    host = market.enroll(market.order("volunteer", tmp_path / "volunteer.cpu"))
    creds = host.auth
    sha256 = buyer.upload_program(fsdither)
    assert _get(market, sha256, creds).status_code == 404
    # One host is enough to hold the lease this test is about (replicas=1).
    buyer.submit(sha256, [b"P5\n1 1\n255\n\x80"], replicas=1)
    lease = requests.post(
        f"{market.url}/v1/lease", json={"wait": 0, "seat": 0}, auth=creds, timeout=10
    ).json()
    assert _get(market, sha256, creds).content == fsdither
    posted = requests.post(
        f"{market.url}/v1/leases/{lease['lease']}/result",
        json={**RESULT, "output": base64.b64encode(b"out").decode()},
        auth=creds,
        timeout=10,
    )
    assert posted.status_code == 200
    # The lease is over: so is the right to read the program.
    assert _get(market, sha256, creds).status_code == 404
