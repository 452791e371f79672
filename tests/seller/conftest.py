"""Fixtures for the seller tests: real market processes, real jobs, seller processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from seller_processes import SellerProcess

from livecd.toolchain import build_job

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def spin(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A job that burns about 0.65 s of CPU per thousand in its input."""
    out = tmp_path_factory.mktemp("jobs") / "spin.job"
    return build_job([HERE / "spin.c"], out).read_bytes()


@pytest.fixture
def sellers(tmp_path: Path) -> Iterator[list[SellerProcess]]:
    """Started sellers are collected here and stopped at the end of the test."""
    started: list[SellerProcess] = []
    yield started
    for seller in started:
        seller.stop(kill=True)
