"""A volunteer signs up, makes a sell order, downloads its `.cpu` file (which enrolls a
machine), sees the machine, and revokes the order; the same order as a stick image and as
a live CD of their own."""

from __future__ import annotations

from pathlib import Path

import pytest
from journey import Journey, assert_refused_as_revoked
from playwright.sync_api import Page, expect

from cpushare.order import parse_order_bytes
from livecd.market_process import MarketProcess
from market.dialect import Location
from market.personal import personal_iso, stick_image
from tests.formats.test_orderslot import small_base


def test_a_volunteer_signs_up_makes_an_order_and_downloads_it(journey: Journey) -> None:
    page, market = journey.page, journey.market
    journey.go("/")
    expect(page.get_by_role("heading", name="The CPUShare market")).to_be_visible()
    journey.shot("home")
    journey.sign_up("ada")
    journey.shot("account")

    row = journey.make_order(max_cpu_seconds=120)
    journey.shot("order-made")
    download = journey.download(row, ".cpu file")
    order = parse_order_bytes(download.path().read_bytes())
    assert download.suggested_filename == f"{order.order_id}.cpu"
    assert (order.account, order.max_cpu_seconds, order.market_url) == ("ada", 120, market.url)
    assert row.get_attribute("data-order") == order.order_id

    # The file is a working order: a machine enrolls with it and shows on Machines.
    host = market.enroll(order, seats=2)
    page.get_by_role("link", name="Machines").click()
    machine = page.locator(f'tr[data-host="{host.id}"]')
    expect(machine).to_contain_text("earning trust")
    journey.shot("machines")

    page.get_by_role("link", name="Sell orders").click()
    journey.revoke("order", order.order_id)
    assert_refused_as_revoked(market, host)  # its machine, at once


def test_another_account_cannot_download_an_order(journey: Journey) -> None:
    page = journey.page
    journey.sign_up("ada")
    order_id = journey.make_order().get_attribute("data-order")
    page.get_by_role("button", name="Sign out ada").click()
    journey.sign_up("eve")
    reply = page.request.get(f"{journey.market.url}/account/orders/{order_id}/order.cpu")
    assert reply.status == 404 and "no order" in reply.text()


def test_a_volunteer_opts_in_to_the_leaderboard(journey: Journey) -> None:
    page = journey.page
    journey.sign_up("ada")
    page.get_by_label("Show my account name").check()
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_label("Show my account name")).to_be_checked()
    journey.go("/")
    expect(page.locator("#leaderboard")).to_have_text("ada: 0.000 coins")


def test_a_volunteer_downloads_their_order_as_a_stick_and_as_their_own_cd(
    page: Page, tmp_path: Path, market_location: Location, request: pytest.FixtureRequest
) -> None:
    base = small_base(tmp_path / "base.iso")
    market = MarketProcess(tmp_path / "m", db=market_location, livecd=base).start()
    try:
        journey = Journey(page, market, request.node.name)
        journey.sign_up("ada")
        row = journey.make_order()
        download = journey.download(row, ".cpu file")
        text = download.path().read_text()
        name = download.suggested_filename
        stick = journey.download(row, "stick image").path().read_bytes()
        assert stick == stick_image(text, name)
        cd = journey.download(row, "your own live CD").path().read_bytes()
        assert cd == personal_iso(base, text, name).read()
        journey.shot("downloads")
        assert journey.errors == []
    finally:
        market.stop(kill=True)
