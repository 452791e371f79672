"""scripts/bench_market.py's figures over several runs: each goal's ratio is worked out
within a run (both sides measured minutes apart) and summed up as a median and range, not
as a ratio of medians taken from different runs."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).parents[2] / "scripts" / "bench_market.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_market", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_market"] = module  # dataclasses look their module up
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules["bench_market"]
    return module


def test_a_goal_ratio_is_paired_within_each_run(
    bench: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    figures = bench.Figures
    lite, pg = ("SQLite", 200, 1, False), ("PostgreSQL", 200, 1, False)
    # Run 1 on a quiet host, run 2 on a busy one: PostgreSQL at 0.9x, then 0.5x SQLite.
    # Medians across runs would say 950 / 1,500 = 0.63x, a ratio no run measured.
    runs = [
        {lite: figures(1000.0, 0.2, 0.0, 0.05), pg: figures(900.0, 0.2, 0.2, 0.05)},
        {lite: figures(2000.0, 0.2, 0.0, 0.05), pg: figures(1000.0, 0.2, 0.1, 0.05)},
    ]
    bench.ratios(runs, 200, [None, "postgresql:///x"])
    out = capsys.readouterr().out
    assert "PostgreSQL at 0.70 (0.50-0.90)x SQLite (goal >= 0.8x)" in out
    # By CPU per round trip: 0.2 / 0.4 and 0.2 / 0.3.
    assert "by CPU per round trip 0.58 (0.50-0.67)x" in out


def test_the_summary_gives_each_configuration_its_median_and_range(
    bench: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    figures = bench.Figures
    key = ("SQLite", 200, 1, True)
    runs = [{key: figures(rate, 0.1, 0.0, 0.01)} for rate in (5000.0, 7000.0, 6000.0)]
    bench.summary(runs)
    out = capsys.readouterr().out
    assert "medians (and ranges) of 3 runs" in out
    assert "6000 (5000-7000) round trips/s" in out
