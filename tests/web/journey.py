"""A browser on the portal, for the journeys: steps, screenshots and the console's errors.
(A module of its own, not conftest: test packages each have a conftest, and
`from conftest import` would find whichever was imported first.)"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import requests
from playwright.sync_api import Download, Locator, Page, expect

from livecd.market_process import Host, MarketProcess

ARTEFACTS = Path(__file__).resolve().parents[2] / "build" / "test-artefacts" / "web"
PASSWORD = "correct horse battery"


def assert_refused_as_revoked(market: MarketProcess, host: Host) -> None:
    """The market refuses `host` a lease: revoked (it, its order or its account)."""
    reply = requests.post(f"{market.url}/v1/lease", json={}, auth=host.auth, timeout=10)
    assert reply.status_code == 403 and reply.json()["code"] == "revoked"


class Journey:
    """A browser on the portal: steps, screenshots, and the console's errors."""

    def __init__(self, page: Page, market: MarketProcess, name: str) -> None:
        self.page = page
        self.market = market
        self.shots = ARTEFACTS / name
        shutil.rmtree(self.shots, ignore_errors=True)
        self.shots.mkdir(parents=True)
        self.step = 0
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))

    def go(self, path: str) -> None:
        self.page.goto(self.market.url + path)

    def shot(self, what: str) -> Path:
        self.step += 1
        path = self.shots / f"{self.step:02d}-{what}.png"
        self.page.screenshot(path=path, full_page=True)
        return path

    def sign_up(self, name: str, password: str = PASSWORD) -> None:
        self.go("/signup")
        self.page.get_by_label("Account name").fill(name)
        self.page.get_by_label("Password", exact=True).fill(password)
        self.page.get_by_label("Password again").fill(password)
        self.page.get_by_role("button", name="Sign up").click()
        expect(self.page.get_by_role("heading", name=f"Account {name}")).to_be_visible()

    def sign_in(self, name: str, password: str = PASSWORD) -> None:
        self.go("/login")
        self.page.get_by_label("Account name").fill(name)
        self.page.get_by_label("Password").fill(password)
        self.page.get_by_role("button", name="Sign in").click()

    def make_order(self, max_cpu_seconds: int | None = None) -> Locator:
        """Makes a sell order on the Sell orders page; the new order's row."""
        self.page.get_by_role("link", name="Sell orders").click()
        if max_cpu_seconds is not None:
            self.page.get_by_label("Most CPU seconds a job may take").fill(str(max_cpu_seconds))
        self.page.get_by_role("button", name="Make a sell order").click()
        row = self.page.locator("#orders tbody tr").first
        expect(row).to_be_visible()
        return row

    def download(self, where: Locator, link: str) -> Download:
        """What following the link named `link` in `where` downloads."""
        with self.page.expect_download() as info:
            where.get_by_role("link", name=link).click()
        return info.value

    def revoke(self, kind: str, name: str) -> None:
        """Presses the Revoke button of the row of the `kind` (order, host) `name`, which
        then says revoked."""
        self.page.get_by_role("button", name=f"Revoke {kind} {name}").click()
        expect(self.page.locator(f'tr[data-{kind}="{name}"]')).to_contain_text("revoked")
        self.shot(f"{kind}-revoked")

    def csrf(self) -> str:
        found = re.search(r'name="csrf" value="([^"]+)"', self.page.content())
        assert found is not None, "no form on this page"
        return found.group(1)
