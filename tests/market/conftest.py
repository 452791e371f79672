"""The market's tests run on each engine the market supports: SQLite and PostgreSQL."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["sqlite", "postgres"])
def market_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)
