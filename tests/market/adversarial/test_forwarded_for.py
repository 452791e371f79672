"""A seller names another network in X-Forwarded-For to agree with itself: the market
believes the header only from a proxy its operator named (`serve --trusted-proxy`)."""

from __future__ import annotations

from pathlib import Path

import requests

from livecd.market_process import MarketProcess, source_session
from market import admin


def _enroll_network(market: MarketProcess, source: str, forwarded: str) -> str:
    order = market.order("volunteer")
    with source_session(source) as session:
        reply = session.post(
            f"{market.url}/v1/hosts",
            json={"seats": 1},
            auth=(order.order_id, order.secret),
            headers={"X-Forwarded-For": forwarded},
            timeout=10,
        )
    assert reply.status_code == 201, reply.text
    host = reply.json()["host"]
    (row,) = [r for r in admin.list_hosts(market.db) if r["host"] == host]
    return str(row["network"])


def test_a_sellers_own_forwarded_for_is_ignored(tmp_path: Path) -> None:
    with MarketProcess(tmp_path).start() as market:
        market.account("volunteer")
        assert _enroll_network(market, "127.0.0.2", "198.51.100.7") == "127.0.0.2"


def test_a_trusted_proxys_forwarded_for_names_the_seller(tmp_path: Path) -> None:
    with MarketProcess(tmp_path, trusted_proxies=["127.0.0.3"]).start() as market:
        market.account("volunteer")
        # Through the proxy: the seller's own address counts.
        assert _enroll_network(market, "127.0.0.3", "198.51.100.7") == "198.51.100.7"
        # Straight to the market, from anywhere else: the header is the seller's word only.
        assert _enroll_network(market, "127.0.0.2", "198.51.100.7") == "127.0.0.2"
        assert requests.get(f"{market.url}/v1/health", timeout=5).ok
