"""Reading other accounts' balances and jobs through /v1/status: it shows the caller's
own account only. Market-wide totals are in the public /v1/stats, whose leaderboard
lists only the accounts that opted in."""

from __future__ import annotations

import base64
from pathlib import Path

import requests
from click.testing import CliRunner

from livecd.cli import main
from livecd.market_process import MarketProcess
from market.buyer import BuyerClient

RESULT = {"outcome": "ok", "exit_status": 0, "cpu_seconds": 2.0, "wall_seconds": 2.0}


def _earn(market: MarketProcess, account: str, tmp_path: Path) -> None:
    """Lease the queued job with a host of `account` and post its result."""
    creds = market.enroll(market.order(account, tmp_path / f"{account}.cpu")).auth
    lease = requests.post(f"{market.url}/v1/lease", json={"seat": 0}, auth=creds, timeout=10)
    lease = lease.json()
    requests.post(
        f"{market.url}/v1/leases/{lease['lease']}/result",
        json={**RESULT, "output": base64.b64encode(b"out").decode()},
        auth=creds,
        timeout=10,
    ).raise_for_status()


def test_status_across_accounts_shows_only_the_callers_own(
    market: MarketProcess, buyer: BuyerClient, fsdither: bytes, tmp_path: Path
) -> None:
    # One host earns here: this test is about what status shows, not agreement.
    buyer.submit(buyer.upload_program(fsdither), [b"a", b"b"], replicas=1)
    market.account("volunteer")
    _earn(market, "volunteer", tmp_path)
    mallory = BuyerClient(market.url, market.account("mallory").api_key)
    seen = mallory.status()
    assert seen["account"] == "mallory"
    assert seen["coins"] == {"mallory": 0.0}
    assert seen["jobs"] == {"open": 0, "done": 0, "failed": 0}
    assert seen["leases_active"] == 0 and seen["results_last_hour"] == 0
    own = buyer.status()
    assert own["jobs"] == {"open": 1, "done": 1, "failed": 0}
    # The buyer's own balance: its grant less what the done job cost and the open one holds.
    assert list(own["coins"]) == ["lab"] and 0 < own["coins"]["lab"] < 1_000_000


def test_status_across_accounts_public_stats_hold_totals_and_opt_ins(
    market: MarketProcess, buyer: BuyerClient, fsdither: bytes, tmp_path: Path
) -> None:
    buyer.submit(buyer.upload_program(fsdither), [b"a"], replicas=1)
    market.account("volunteer")
    _earn(market, "volunteer", tmp_path)
    joined = CliRunner().invoke(
        main, ["market", "account", "leaderboard", "volunteer", "--db", str(market.db)]
    )
    assert joined.exit_code == 0, joined.output
    stats = requests.get(f"{market.url}/v1/stats", timeout=10)
    assert stats.status_code == 200
    doc = stats.json()
    assert doc["jobs"] == {"open": 0, "done": 1, "failed": 0}
    assert doc["coins_credited"] == 2.0
    assert doc["leaderboard"] == [{"account": "volunteer", "coins": 2.0}]
    # lab did not opt in: its name appears nowhere.
    assert "lab" not in stats.text
