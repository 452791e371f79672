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
    """Lease the queued job with an order of `account` and post its result."""
    order = market.order(account, tmp_path / f"{account}.cpu")
    creds = (order.order_id, order.secret)
    lease = requests.post(f"{market.url}/v1/lease", json={}, auth=creds, timeout=10).json()
    requests.post(
        f"{market.url}/v1/leases/{lease['lease']}/result",
        json={**RESULT, "output": base64.b64encode(b"out").decode()},
        auth=creds,
        timeout=10,
    ).raise_for_status()


def test_status_across_accounts_shows_only_the_callers_own(
    market: MarketProcess, buyer: BuyerClient, fsdither: bytes, tmp_path: Path
) -> None:
    buyer.submit(buyer.upload_program(fsdither), [b"a", b"b"])
    market.account("volunteer")
    _earn(market, "volunteer", tmp_path)
    mallory = BuyerClient(market.url, market.account("mallory").api_key)
    seen = mallory.status()
    assert seen["account"] == "mallory"
    assert seen["coins"] == {"mallory": 0.0}
    assert seen["jobs"] == {"open": 0, "done": 0, "failed": 0}
    assert seen["leases_active"] == 0 and seen["results_last_hour"] == 0
    own = buyer.status()
    assert own["coins"] == {"lab": 0.0} and own["jobs"] == {"open": 1, "done": 1, "failed": 0}


def test_status_across_accounts_public_stats_hold_totals_and_opt_ins(
    market: MarketProcess, buyer: BuyerClient, fsdither: bytes, tmp_path: Path
) -> None:
    buyer.submit(buyer.upload_program(fsdither), [b"a"])
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
