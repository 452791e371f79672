"""What the live system checks before it sells: here, which orders it takes."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from cpushare.console import parse_line
from cpushare.order import SellOrder
from cpushare.startup import (
    MAX_MEDIUM_ENTRIES,
    MAX_MEDIUM_ORDERS,
    copy_orders,
    medium_order_names,
    valid_orders,
)
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


def _hostile_folder(folder: Path) -> Path:
    """A medium's top folder as a hostile one could be: a link to a secret, a folder, a
    FIFO and a huge file, all named like orders, beside one good order."""
    folder.mkdir()
    good = folder / "good.cpu"
    write_order(SellOrder("http://127.0.0.1:9", "o-good", "s" * 24, "lab", nice=5), good)
    secret = folder.parent / "shadow"
    secret.write_text("root:$6$secret-hash:19000:0:99999:7:::\n")
    (folder / "x.cpu").symlink_to(secret)
    (folder / "y.cpu").mkdir()
    os.mkfifo(folder / "z.cpu")
    with open(folder / "huge.CPU", "wb") as f:
        f.truncate(4 << 30)  # sparse: 4 GiB that costs no disk
    (folder / "notes.txt").write_text("not an order\n")
    return good


def _errors(out: str) -> dict[str, str]:
    fields = [parse_line(line) for line in out.splitlines()]
    assert all(f is not None for f in fields), out
    return {f["file"]: f["detail"] for f in fields if f and f["event"] == "error"}


EXPECTED = {
    "huge.CPU": "larger than an order may be",
    "x.cpu": "symbolic link",
    "y.cpu": "directory",
    "z.cpu": "FIFO",
}


def test_a_hostile_medium_is_copied_without_following_blocking_or_filling_memory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = _hostile_folder(tmp_path / "mnt")
    copies = tmp_path / "copies"
    copies.mkdir()
    started = time.monotonic()
    assert copy_orders(tmp_path / "mnt", copies) == [copies / "good.cpu"]
    assert time.monotonic() - started < 10  # the FIFO was not waited on
    assert (copies / "good.cpu").read_bytes() == good.read_bytes()
    assert sorted(p.name for p in copies.iterdir()) == ["good.cpu"]
    errors = _errors(capsys.readouterr().out)
    assert sorted(errors) == sorted(EXPECTED)
    for name, needle in EXPECTED.items():
        assert needle in errors[name] and "secret" not in errors[name], (name, errors)


def test_orders_in_a_folder_skip_links_folders_fifos_and_huge_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = _hostile_folder(tmp_path / "orders")
    paths = sorted((tmp_path / "orders").glob("*.[cC][pP][uU]"))
    assert valid_orders(paths) == [(good, 5)]
    errors = _errors(capsys.readouterr().out)
    assert sorted(errors) == sorted(EXPECTED)
    for name, needle in EXPECTED.items():
        assert needle in errors[name], (name, errors)


@pytest.mark.parametrize(
    ("orders", "others", "said"),
    [
        (MAX_MEDIUM_ORDERS, 10, False),  # all of them, and nothing to say
        (MAX_MEDIUM_ORDERS + 1, 0, True),
        (10, MAX_MEDIUM_ENTRIES, True),  # the orders may lie beyond the entries looked at
    ],
)
def test_only_so_many_order_files_of_a_medium_are_looked_at(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], orders: int, others: int, said: bool
) -> None:
    folder = tmp_path / "mnt"
    folder.mkdir()
    for i in range(orders):
        (folder / f"o{i:04}.cpu").write_bytes(b"")
    for i in range(others):
        (folder / f"n{i:04}.txt").write_bytes(b"")
    names = medium_order_names(folder)
    assert len(names) <= MAX_MEDIUM_ORDERS and names == sorted(names)
    if not said:
        assert len(names) == orders
    lines = [parse_line(line) for line in capsys.readouterr().out.splitlines()]
    expected = [("medium", True)] if said else []
    assert [(f["what"], "ignored" in f["detail"]) for f in lines if f] == expected
