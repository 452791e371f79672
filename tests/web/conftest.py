"""The portal's browser tests: Playwright driving Debian's chromium (Playwright's own
browser download is not needed), against a real market on loopback. Each journey saves
screenshots under build/test-artefacts/web/ and fails on any error in the browser's
console."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from journey import Journey
from playwright.sync_api import Page

from livecd.market_process import MarketProcess

# The seller tests' process helpers (a plain module there, not a package).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "seller"))


@pytest.fixture
def journey(page: Page, market: MarketProcess, request: pytest.FixtureRequest) -> Iterator[Journey]:
    """A journey named after its test; it fails if the browser logged any error."""
    walk = Journey(page, market, request.node.name)
    yield walk
    walk.shot("end")
    assert walk.errors == [], walk.errors
