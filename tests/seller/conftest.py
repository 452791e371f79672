"""Fixtures for the seller tests: real market processes, real jobs, seller processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from seller_processes import SellerProcess, StartSeller


@pytest.fixture
def start_seller(tmp_path: Path) -> Iterator[StartSeller]:
    """Starts sellers in the test's folder; those started are stopped at the end of the
    test."""
    started: list[SellerProcess] = []

    def start(order: Path, *extra: str, source: str | None = None) -> SellerProcess:
        started.append(SellerProcess(order, tmp_path, *extra, source=source))
        return started[-1]

    yield start
    for seller in started:
        seller.stop(kill=True)
