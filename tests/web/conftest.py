"""The portal's browser tests: Playwright driving Debian's chromium (Playwright's own
browser download is not needed), against a real market on loopback. Each journey saves
screenshots under build/test-artefacts/web/ and fails on any error in the browser's
console."""

from __future__ import annotations

import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from livecd.market_process import MarketProcess

ROOT = Path(__file__).resolve().parents[2]
ARTEFACTS = ROOT / "build" / "test-artefacts" / "web"
PASSWORD = "correct horse battery"

# The seller tests' process helpers (a plain module there, not a package).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "seller"))


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("no chromium: scripts/install-host-packages.sh installs Debian's")
    # --no-sandbox: chromium's sandbox needs user namespaces the test machine may lack.
    return {**browser_type_launch_args, "executable_path": chromium, "args": ["--no-sandbox"]}


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

    def csrf(self) -> str:
        found = re.search(r'name="csrf" value="([^"]+)"', self.page.content())
        assert found is not None, "no form on this page"
        return found.group(1)


@pytest.fixture
def journey(page: Page, market: MarketProcess, request: pytest.FixtureRequest) -> Iterator[Journey]:
    """A journey named after its test; it fails if the browser logged any error."""
    walk = Journey(page, market, request.node.name)
    yield walk
    walk.shot("end")
    assert walk.errors == [], walk.errors
