"""Fixtures for the seller tests: real market processes, real jobs, seller processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from seller_processes import SellerProcess


@pytest.fixture
def sellers(tmp_path: Path) -> Iterator[list[SellerProcess]]:
    """Started sellers are collected here and stopped at the end of the test."""
    started: list[SellerProcess] = []
    yield started
    for seller in started:
        seller.stop(kill=True)
