"""Forms without this session's CSRF token are refused; a session id planted before
signing in never becomes signed in; sign-in attempts are limited; passwords are scrypt
hashes; a password change signs other browsers out; API keys from the page work."""

from __future__ import annotations

import sqlite3

import requests
from journey import PASSWORD, Journey
from playwright.sync_api import Browser, expect

from livecd.market_process import MarketProcess
from market.web import passwords
from market.web.limits import BURST


def test_a_form_without_the_sessions_csrf_token_is_refused(journey: Journey) -> None:
    page, market = journey.page, journey.market
    journey.sign_up("ada")
    token = journey.csrf()
    url = f"{market.url}/account/keys"
    # The browser's own cookie, but no token, or a token of another session.
    missing = page.request.post(url, form={"label": "stolen"})
    assert missing.status == 403 and "stale or came from another site" in missing.text()
    other = requests.get(f"{market.url}/login", timeout=10).text
    foreign = other.split('name="csrf" value="')[1].split('"')[0]
    assert page.request.post(url, form={"csrf": foreign, "label": "stolen"}).status == 403
    page.reload()
    expect(page.get_by_role("table")).to_have_count(0)  # no key was made
    # The same request with the page's own token is accepted.
    made = page.request.post(url, form={"csrf": token, "label": "mine"})
    assert made.status == 200 and "shown only this once" in made.text()


def test_another_site_cannot_post_a_form_into_a_signed_in_browser(journey: Journey) -> None:
    page, market = journey.page, journey.market
    journey.sign_up("ada")
    # A page elsewhere (here a data: URL) posting to the market: SameSite keeps the
    # cookie home, and without the token the market refuses anyway.
    page.set_content(
        f'<form method="post" action="{market.url}/account/orders">'
        '<input type="hidden" name="nice" value="0"><button>go</button></form>'
    )
    page.get_by_role("button", name="go").click()
    expect(page.get_by_role("alert")).to_be_visible()
    journey.errors.clear()  # the refusal's 403 is logged by the browser, as it should be
    journey.go("/account/orders")
    expect(page.get_by_text("No sell order yet.")).to_be_visible()


def test_a_session_id_planted_before_sign_in_stays_signed_out(
    journey: Journey, browser: Browser
) -> None:
    page, market = journey.page, journey.market
    journey.sign_up("ada")
    page.get_by_role("button", name="Sign out ada").click()
    # The attacker visits first and plants their session cookie in the victim's browser.
    attacker = browser.new_context()
    attacker.new_page().goto(market.url + "/login")
    planted = next(c for c in attacker.cookies() if c["name"] == "cpushare_session")
    page.context.add_cookies([planted])
    journey.sign_in("ada")
    expect(page.get_by_role("heading", name="Account ada")).to_be_visible()
    mine = next(c for c in page.context.cookies() if c["name"] == "cpushare_session")
    assert mine["value"] != planted["value"]
    # The attacker's id is still nobody's.
    their_page = attacker.new_page()
    their_page.goto(market.url + "/account")
    expect(their_page.get_by_role("heading", name="Sign in")).to_be_visible()
    attacker.close()


def test_sign_in_attempts_are_limited(journey: Journey) -> None:
    page = journey.page
    journey.sign_up("ada")
    page.get_by_role("button", name="Sign out ada").click()
    for _ in range(BURST):
        journey.sign_in("ada", "wrong password!")
        expect(page.get_by_role("alert")).to_have_text("wrong account name or password")
    journey.sign_in("ada")  # the right password, too late
    expect(page.get_by_role("alert")).to_contain_text("too many sign-in attempts")
    journey.shot("limited")
    journey.errors.clear()  # 401 and 429 pages, logged by the browser as they should be


def test_a_password_is_stored_as_a_salted_scrypt_hash(journey: Journey) -> None:
    journey.sign_up("ada")
    journey.sign_up("bob")
    with sqlite3.connect(journey.market.db) as db:
        rows = dict(db.execute("SELECT name, password_hash FROM accounts").fetchall())
    assert rows["ada"].startswith("scrypt$16384$8$1$") and PASSWORD not in rows["ada"]
    assert rows["ada"] != rows["bob"]  # same password, different salts
    assert passwords.verify(PASSWORD, rows["ada"])
    assert not passwords.verify(PASSWORD + "x", rows["ada"])


def test_changing_the_password_signs_other_browsers_out(journey: Journey, browser: Browser) -> None:
    page, market = journey.page, journey.market
    journey.sign_up("ada")
    other = browser.new_context().new_page()
    other.goto(market.url + "/login")
    other.get_by_label("Account name").fill("ada")
    other.get_by_label("Password").fill(PASSWORD)
    other.get_by_role("button", name="Sign in").click()
    expect(other.get_by_role("heading", name="Account ada")).to_be_visible()

    journey.go("/account/password")
    page.get_by_label("Current password").fill(PASSWORD)
    page.get_by_label("New password", exact=True).fill("a much better one")
    page.get_by_label("New password again").fill("a much better one")
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_role("heading", name="Account ada")).to_be_visible()
    other.goto(market.url + "/account")
    expect(other.get_by_role("heading", name="Sign in")).to_be_visible()
    other.context.close()
    page.get_by_role("button", name="Sign out ada").click()
    journey.sign_in("ada", "a much better one")
    expect(page.get_by_role("heading", name="Account ada")).to_be_visible()


def test_an_api_key_made_on_the_page_works_until_revoked(journey: Journey) -> None:
    page, market = journey.page, journey.market
    journey.sign_up("ada")
    page.get_by_label("Label for a new key").fill("laptop")
    page.get_by_role("button", name="Make a key").click()
    key = page.locator("#new-key").inner_text()
    journey.shot("key")
    api = {"Authorization": f"Bearer {key}"}
    status = requests.get(f"{market.url}/v1/status", headers=api, timeout=10)
    assert status.status_code == 200 and status.json()["account"] == "ada"
    page.get_by_role("button", name="Revoke key laptop").click()
    expect(page.locator("#new-key")).to_have_count(0)
    assert requests.get(f"{market.url}/v1/status", headers=api, timeout=10).status_code == 401


def test_sign_ups_from_one_address_are_limited(market: MarketProcess) -> None:
    replies = []
    for n in range(BURST + 1):
        session = requests.Session()
        page = session.get(f"{market.url}/signup", timeout=10).text
        token = page.split('name="csrf" value="')[1].split('"')[0]
        form = {"csrf": token, "name": f"bulk{n}", "password": PASSWORD, "confirm": PASSWORD}
        replies.append(session.post(f"{market.url}/signup", data=form, timeout=30))
    assert [r.status_code for r in replies] == [200] * BURST + [429]
    assert "too many" in replies[-1].text and replies[-1].headers["Retry-After"] == "12"
