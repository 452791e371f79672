"""The market's tests run on each engine the market supports: SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from market.dialect import Connection, Location
from market.store import open_database
from tests.market.helpers import market_db


@pytest.fixture(params=["sqlite", "postgres"])
def market_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def conn(market_location: Location) -> Iterator[Connection]:
    """A connection to a new market's store (on each engine), closed after the test."""
    db = market_db(open_database(market_location))
    yield db
    db.close()
