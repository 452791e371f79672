"""The operator's pages: a host revoked on the page is refused on its next request; coins
granted and an account disabled from the page; the pages are the operators' only."""

from __future__ import annotations

import requests
from click.testing import CliRunner
from journey import Journey, assert_refused_as_revoked
from playwright.sync_api import expect

from livecd.cli import main
from livecd.market_process import MarketProcess
from market import admin


def test_an_operator_revokes_a_host_and_its_next_request_is_refused(journey: Journey) -> None:
    page, market = journey.page, journey.market
    market.account("ada")
    host = market.enroll(market.order("ada"), seats=1)
    lease = requests.post(f"{market.url}/v1/lease", json={}, auth=host.auth, timeout=10)
    assert lease.status_code == 204  # a working host: nothing to lease yet

    journey.sign_up("root")
    made = CliRunner().invoke(
        main, ["market", "account", "operator", "root", "--db", str(market.db)]
    )
    assert made.exit_code == 0 and "now an operator" in made.output
    page.reload()
    page.get_by_role("link", name="Operator").click()
    expect(page.locator("#ledger")).to_have_text("the books add up")
    row = page.locator(f'tr[data-host="{host.id}"]')
    expect(row).to_contain_text("ada")
    journey.shot("operator")
    journey.revoke("host", host.id)
    assert_refused_as_revoked(market, host)


def test_an_operator_grants_coins_and_disables_an_account(journey: Journey) -> None:
    page, market = journey.page, journey.market
    buyer = market.account("lab")
    journey.sign_up("root")
    admin.set_operator(market.db, "root", True)
    journey.go("/operator")
    row = page.locator('tr[data-account="lab"]')
    row.get_by_label("Coins for lab").fill("12.5")
    row.get_by_role("button", name="Grant").click()
    expect(page.locator('tr[data-account="lab"]')).to_contain_text("12.500")
    api = {"Authorization": f"Bearer {buyer.api_key}"}
    assert requests.get(f"{market.url}/v1/status", headers=api, timeout=10).status_code == 200

    page.locator('tr[data-account="lab"]').get_by_role("button", name="Disable lab").click()
    expect(page.locator('tr[data-account="lab"]')).to_contain_text("disabled")
    reply = requests.get(f"{market.url}/v1/status", headers=api, timeout=10)
    assert reply.status_code == 403 and reply.json()["code"] == "revoked"


def test_the_operator_pages_are_for_operators_only(journey: Journey) -> None:
    page, market = journey.page, journey.market
    market.account("ada")
    host = market.enroll(market.order("ada"))
    journey.sign_up("mallory")
    expect(page.get_by_role("link", name="Operator")).to_have_count(0)
    token = journey.csrf()
    reply = page.request.post(f"{market.url}/operator/hosts/{host.id}/revoke", form={"csrf": token})
    assert reply.status == 403 and "for the market" in reply.text()
    assert requests.post(f"{market.url}/v1/lease", json={}, auth=host.auth, timeout=10).ok


def test_the_operator_command_names_an_unknown_account(market: MarketProcess) -> None:
    result = CliRunner().invoke(
        main, ["market", "account", "operator", "nobody", "--db", str(market.db)]
    )
    assert result.exit_code != 0
    assert "no account 'nobody'" in result.output and "Traceback" not in result.output
