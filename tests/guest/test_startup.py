"""What the live system checks before it sells: here, which orders it takes."""

from __future__ import annotations

from pathlib import Path

import pytest

from cpushare.console import parse_line
from cpushare.order import SellOrder
from cpushare.startup import valid_orders
from livecd.orders import write_order


def test_valid_orders_are_kept_with_their_nice_and_the_others_named_and_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good.cpu"
    write_order(SellOrder("http://127.0.0.1:9", "o-good", "s" * 24, "lab", nice=10), good)
    broken = tmp_path / "broken.cpu"
    broken.write_text("market_url = 42\n")
    missing = tmp_path / "missing.cpu"
    assert valid_orders([broken, good, missing]) == [(good, 10)]
    lines = [parse_line(line) for line in capsys.readouterr().out.splitlines()]
    assert [(f["what"], f["file"]) for f in lines if f] == [
        ("order", "broken.cpu"),
        ("order", "missing.cpu"),
    ]
    assert all(f and f["detail"] for f in lines)
