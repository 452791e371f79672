"""Every page: no error in the browser's console, every form field labelled, one h1;
and a form filled in and sent with the keyboard alone."""

from __future__ import annotations

from pathlib import Path

import pytest
from journey import PASSWORD, Journey
from playwright.sync_api import Page, expect

from livecd.sdk.dither import sample_image
from market import admin

UNLABELLED = """() => [...document.querySelectorAll('input, select, textarea')]
    .filter(e => e.type !== 'hidden' && e.labels.length === 0 && !e.getAttribute('aria-label'))
    .map(e => e.outerHTML)"""
UNNAMED_BUTTONS = """() => [...document.querySelectorAll('button, a')]
    .filter(e => !(e.innerText.trim() || e.getAttribute('aria-label')))
    .map(e => e.outerHTML)"""


def check_page(journey: Journey, path: str) -> None:
    page = journey.page
    response = page.goto(journey.market.url + path)
    assert response is not None and response.status == 200, path
    assert page.evaluate(UNLABELLED) == [], path
    assert page.evaluate(UNNAMED_BUTTONS) == [], path
    expect(page.locator("h1")).to_have_count(1)
    assert page.evaluate("document.documentElement.lang") == "en"
    journey.shot(path.strip("/").replace("/", "-") or "home")


# On both engines: every page's queries run on SQLite and PostgreSQL.
@pytest.mark.parametrize("market_backend", ["sqlite", "postgres"])
def test_every_page_has_labelled_fields_and_no_console_errors(
    journey: Journey, tmp_path: Path, fsdither: bytes
) -> None:
    page, market = journey.page, journey.market
    for path in ("/", "/help", "/signup", "/login"):
        check_page(journey, path)
    journey.sign_up("root")
    admin.set_operator(market.db, "root", True)
    market.grant("root", 1000)
    # Something on every page: an order and its machine, a batch, a key.
    journey.go("/account/orders")
    page.get_by_role("button", name="Make a sell order").click()
    market.account("ada")
    market.enroll(market.order("ada"))
    (tmp_path / "job").write_bytes(fsdither)
    (tmp_path / "a.pgm").write_bytes(sample_image(4, 4))
    journey.go("/account/batches")
    page.get_by_label("Name of the batch").fill("one")
    page.get_by_label("Program").set_input_files(tmp_path / "job")
    page.get_by_label("Inputs").set_input_files(tmp_path / "a.pgm")
    page.get_by_role("button", name="Upload the batch").click()
    expect(page.get_by_role("heading", name="Batch one")).to_be_visible()
    batch = page.url.rsplit("/", 1)[1]
    for path in (
        "/",
        "/account",
        "/account/password",
        "/account/orders",
        "/account/machines",
        "/account/batches",
        f"/account/batches/{batch}",
        "/operator",
        "/help",
    ):
        check_page(journey, path)


def tab_to(page: Page, element_id: str) -> None:
    for _ in range(20):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == element_id:
            return
    raise AssertionError(f"#{element_id} cannot be reached with Tab")


def test_signing_up_and_in_with_the_keyboard_alone(journey: Journey) -> None:
    page = journey.page
    journey.go("/")
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to the content")).to_be_focused()
    journey.go("/signup")
    tab_to(page, "name")
    page.keyboard.type("kim")
    tab_to(page, "password")
    page.keyboard.type(PASSWORD)
    tab_to(page, "confirm")
    page.keyboard.type(PASSWORD)
    journey.shot("typed")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Account kim")).to_be_visible()
    # Signing out is a button reached with Tab too.
    page.get_by_role("button", name="Sign out kim").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("link", name="Sign in")).to_be_visible()
    journey.go("/login")
    tab_to(page, "name")
    page.keyboard.type("kim")
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Account kim")).to_be_visible()
