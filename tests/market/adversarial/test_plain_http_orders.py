"""Fetching orders and talking to a market over plain HTTP across the network, where
anyone on the way reads the order's secret or the API key: `livecd order fetch`,
`livecd build --order URL` and the buyer's client refuse it, with one line, before
connecting; plain HTTP stays allowed to loopback (the other tests use it)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from livecd.builtin_orders import load_orders
from livecd.cli import main
from livecd.errors import BuildError
from market.buyer import BuyerClient, ClientError

# TEST-NET-1: nothing answers there, so a client that tried would only time out.
FAR = "http://192.0.2.7:8080"


def test_plain_http_order_fetch_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "lab.cpu"
    refused = CliRunner().invoke(main, ["order", "fetch", f"{FAR}/lab.cpu", "-o", str(out)])
    assert refused.exit_code == 2
    lines = refused.output.strip().splitlines()
    assert len(lines) == 1 and "plain http to another machine" in lines[0], refused.output
    assert not out.exists()


def test_plain_http_build_order_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="plain http to another machine"):
        load_orders([f"{FAR}/lab.cpu"], tmp_path)


def test_plain_http_buyer_client_keeps_its_key(tmp_path: Path) -> None:
    with pytest.raises(ClientError, match=r"will not send the API key: .*plain http"):
        BuyerClient(FAR, "ck-secret")
    (tmp_path / "job").write_bytes(b"")
    for command in (
        ["status"],
        ["submit", str(tmp_path / "job"), "--input", str(tmp_path / "job")],
    ):
        refused = CliRunner().invoke(
            main, ["market", *command, "--market", FAR, "--api-key", "ck-secret"]
        )
        assert refused.exit_code == 2, refused.output
        assert len(refused.output.strip().splitlines()) == 1 and "plain http" in refused.output
