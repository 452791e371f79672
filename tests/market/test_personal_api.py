"""A volunteer's orders over the API, on a real server and both engines: create one, get
its CD and stick (only its own account, not once revoked), the buyer CLI's verbs, and the
public statistics export."""

from __future__ import annotations

import base64
import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from cpushare.order import SellOrder, parse_order
from diskformats.orderslot import SLOT_SIZE, find_slot
from livecd.cli import main
from livecd.market_process import Host, MarketProcess, source_session
from market import admin
from market.buyer import BuyerClient, ClientError
from market.dialect import Location
from market.personal import personal_iso, stick_image
from tests.formats.test_orderslot import small_base


@pytest.fixture
def base(tmp_path: Path) -> Path:
    return small_base(tmp_path / "base.iso")


@pytest.fixture
def served(tmp_path: Path, market_location: Location, base: Path) -> Iterator[MarketProcess]:
    """A market serving personal CDs made from `base`."""
    process = MarketProcess(tmp_path / "m", db=market_location, livecd=base).start()
    yield process
    process.stop(kill=True)


def _create(market: MarketProcess, key: str, **terms: int) -> requests.Response:
    return requests.post(
        f"{market.url}/v1/orders",
        json=terms,
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )


def _get(market: MarketProcess, key: str, path: str) -> requests.Response:
    return requests.get(
        f"{market.url}{path}", headers={"Authorization": f"Bearer {key}"}, timeout=30
    )


def test_an_account_creates_an_order_and_downloads_it_as_cd_and_stick(
    served: MarketProcess, base: Path, tmp_path: Path
) -> None:
    key = served.account("vol").api_key
    reply = _create(served, key, nice=10, max_memory_mb=128)
    assert reply.status_code == 201 and reply.headers["content-type"] == "application/toml"
    text = reply.text
    order = parse_order(text)
    assert (order.account, order.market_url, order.nice, order.max_memory_mb) == (
        "vol",
        served.url,
        10,
        128,
    )
    assert reply.headers["location"] == f"/v1/orders/{order.order_id}"
    # The order is real: a machine enrolls with it.
    served.enroll(order)

    client = BuyerClient(served.url, key)
    iso = tmp_path / "mine.iso"
    assert client.livecd(order.order_id, iso) == base.stat().st_size
    name = f"{order.order_id}.cpu"
    assert iso.read_bytes() == personal_iso(base, text, name).read()
    again = tmp_path / "again.iso"
    client.livecd(order.order_id, again)
    assert again.read_bytes() == iso.read_bytes()
    offset, before, after = find_slot(base), base.read_bytes(), iso.read_bytes()
    assert (
        after[:offset] == before[:offset]
        and after[offset + SLOT_SIZE :] == before[offset + SLOT_SIZE :]
    )
    assert text.encode() in after[offset : offset + SLOT_SIZE]

    stick = tmp_path / "stick.img"
    client.stick(order.order_id, stick)
    assert stick.read_bytes() == stick_image(text, name)


def test_only_the_orders_own_account_downloads_it_and_not_once_revoked(
    served: MarketProcess, tmp_path: Path
) -> None:
    key, other = served.account("vol").api_key, served.account("other").api_key
    order = parse_order(_create(served, key).text)
    path = f"/v1/orders/{order.order_id}/livecd.iso"
    assert requests.get(f"{served.url}{path}", timeout=5).status_code == 401
    for who, what in [(other, path), (key, "/v1/orders/o-nosuchorder/stick.img")]:
        refused = _get(served, who, what)
        assert refused.status_code == 404 and "no order" in refused.json()["error"]
    # The operator's orders keep only their secret's hash: nothing to download.
    issued = served.order("vol")
    refused = _get(served, key, f"/v1/orders/{issued.order_id}/stick.img")
    assert refused.status_code == 409 and "make one with POST /v1/orders" in refused.json()["error"]
    BuyerClient(served.url, key).revoke_order(order.order_id)
    for tail in ("livecd.iso", "stick.img"):
        gone = _get(served, key, f"/v1/orders/{order.order_id}/{tail}")
        assert gone.status_code == 410 and "revoked" in gone.json()["error"]


def test_bad_terms_are_refused_and_create_nothing(served: MarketProcess) -> None:
    key = served.account("vol").api_key
    refused = _create(served, key, nice=20)
    assert refused.status_code == 400
    assert refused.json() == {"error": "nice must be an integer in 0..19"}
    assert admin.list_accounts(served.db)[-1] == {
        "name": "vol",
        "orders": 0,
        "coins": 0.0,
        "disabled": False,
    }


def test_a_market_without_a_live_cd_says_so_in_one_line(
    market: MarketProcess, tmp_path: Path
) -> None:
    key = market.account("vol").api_key
    order = parse_order(_create(market, key).text)
    with pytest.raises(ClientError, match=r"HTTP 404: this market serves no live CD: .*--livecd"):
        BuyerClient(market.url, key).livecd(order.order_id, tmp_path / "x.iso")
    assert not (tmp_path / "x.iso").exists()
    BuyerClient(market.url, key).stick(order.order_id, tmp_path / "x.img")


def test_the_buyer_cli_creates_an_order_and_downloads_cd_and_stick(
    served: MarketProcess, base: Path, tmp_path: Path
) -> None:
    env = {"CPUSHARE_MARKET": served.url, "CPUSHARE_API_KEY": served.account("vol").api_key}
    runner = CliRunner()
    cpu = tmp_path / "vol.cpu"
    made = runner.invoke(main, ["market", "order", "create", "-o", str(cpu), "--json"], env=env)
    assert made.exit_code == 0, made.output
    order_id = json.loads(made.output)["order_id"]
    assert parse_order(cpu.read_text()).order_id == order_id and cpu.stat().st_mode & 0o077 == 0
    iso, stick = tmp_path / "vol.iso", tmp_path / "vol.img"
    cd = runner.invoke(main, ["market", "order", "cd", order_id, "-o", str(iso)], env=env)
    assert cd.exit_code == 0 and f"wrote {iso}" in cd.output
    assert iso.read_bytes() == personal_iso(base, cpu.read_text(), f"{order_id}.cpu").read()
    st = runner.invoke(main, ["market", "order", "stick", order_id, "-o", str(stick)], env=env)
    assert st.exit_code == 0 and stick.read_bytes() == stick_image(
        cpu.read_text(), f"{order_id}.cpu"
    )
    wrong = runner.invoke(main, ["market", "order", "cd", "o-nosuch", "-o", str(iso)], env=env)
    assert wrong.exit_code == 2
    assert wrong.output.strip().splitlines() == [
        "livecd: error: the market refused GET /v1/orders/o-nosuch/livecd.iso: "
        "HTTP 404: no order 'o-nosuch' in this account"
    ]


def _sell_one(
    market: MarketProcess, buyer: BuyerClient, order: SellOrder, fsdither: bytes, source: str
) -> Host:
    """One job sold by a host enrolled with `order`, accepted and paid."""
    host = market.enroll(order, source=source)
    buyer.submit(buyer.upload_program(fsdither), [b"in"], replicas=1)
    session = source_session(source)
    lease = session.post(f"{market.url}/v1/lease", json={"wait": 10}, auth=host.auth, timeout=30)
    body = {
        "outcome": "ok",
        "exit_status": 0,
        "output": base64.b64encode(b"out").decode(),
        "cpu_seconds": 1.5,
        "wall_seconds": 1.6,
    }
    posted = session.post(
        f"{market.url}/v1/leases/{lease.json()['lease']}/result",
        json=body,
        auth=host.auth,
        timeout=30,
    )
    assert posted.json()["verdict"] == "accepted"
    return host


def test_the_export_shows_leaderboard_accounts_and_their_hosts_only(
    market: MarketProcess, fsdither: bytes
) -> None:
    buyer = BuyerClient(market.url, market.account("lab", coins=1000).api_key)
    shown_key, hidden_key = market.account("vol").api_key, market.account("shy").api_key
    admin.set_leaderboard(market.db, "vol", True)
    shown = parse_order(_create(market, shown_key).text)
    hidden = parse_order(_create(market, hidden_key).text)
    host = _sell_one(market, buyer, shown, fsdither, "127.0.0.2")
    _sell_one(market, buyer, hidden, fsdither, "127.0.0.3")

    files = {n: requests.get(f"{market.url}/v1/export/{n}", timeout=10) for n in
             ("accounts.json", "hosts.json", "user.xml", "host.xml")}  # fmt: skip
    accounts = files["accounts.json"].json()["accounts"]
    assert [(a["name"], a["coins"], a["results"], a["hosts"]) for a in accounts] == [
        ("vol", 1.5, 1, 1)
    ]
    hosts = files["hosts.json"].json()["hosts"]
    assert [(h["account"], h["coins"], h["results"], h["seats"]) for h in hosts] == [
        ("vol", 1.5, 1, 1)
    ]
    users = ET.fromstring(files["user.xml"].content)
    assert [(u.findtext("name"), u.findtext("total_credit")) for u in users] == [("vol", "1.5")]
    machines = ET.fromstring(files["host.xml"].content)
    assert [m.findtext("id") for m in machines] == [hosts[0]["id"]]
    assert files["user.xml"].headers["content-type"] == "application/xml"
    everything = b"".join(f.content for f in files.values())
    for secret in (host.id, host.secret, shown.order_id, shown.secret, "shy", "127.0.0"):
        assert secret.encode() not in everything
    # Made at most once a day: a new sale does not show before tomorrow's dump.
    _sell_one(market, buyer, shown, fsdither, "127.0.0.4")
    later = requests.get(f"{market.url}/v1/export/accounts.json", timeout=10)
    assert later.content == files["accounts.json"].content
