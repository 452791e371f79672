"""The seller's status file: replaced whole, never left half-done, listed as a table."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from cpushare.seller.agent import stop_on_signal
from cpushare.seller.status import SellerStatus, StatusFile, format_table, read_statuses


@pytest.fixture
def sigterm_stops() -> Iterator[None]:
    """The seller's SIGTERM handler in this process for the test (it ignores a second one)."""
    previous = signal.signal(signal.SIGTERM, stop_on_signal)
    yield
    signal.signal(signal.SIGTERM, previous)


def test_status_file_is_replaced_whole(tmp_path: Path) -> None:
    status = StatusFile(tmp_path / "run", Path("orders/lab.cpu"), SellerStatus("o-1", "m"))
    path = tmp_path / "run" / "lab.json"
    with open(path) as before:  # a reader in the middle of reading the old state
        status.update(state="running", job=4)
        # Rewritten in place, the open file would now show the new state (or a torn one).
        assert json.loads(before.read())["state"] == "starting"
        assert os.fstat(before.fileno()).st_ino != path.stat().st_ino
    doc = json.loads(path.read_text())
    assert (doc["order"], doc["state"], doc["job"]) == ("o-1", "running", 4)
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["lab.json"]


def test_a_sigterm_just_after_the_rename_still_stops_the_seller(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sigterm_stops: None
) -> None:
    status = StatusFile(tmp_path, Path("lab.cpu"), SellerStatus("o-1", "m"))
    rename = os.replace

    def rename_then_sigterm(source: str, target: Path) -> None:
        rename(source, target)
        signal.raise_signal(signal.SIGTERM)  # its handler runs before this returns

    monkeypatch.setattr(os, "replace", rename_then_sigterm)
    with pytest.raises(SystemExit) as stopped:
        status.update(state="running")
    assert stopped.value.code == 128 + signal.SIGTERM
    assert json.loads((tmp_path / "lab.json").read_text())["state"] == "running"
    assert [p.name for p in tmp_path.iterdir()] == ["lab.json"]


def test_the_status_table_lists_each_seller(tmp_path: Path) -> None:
    file = StatusFile(tmp_path, Path("lab-cpu0.cpu"), SellerStatus("o-1", "https://m"))
    file.update(state="running", job=12, jobs_done=3, cpu_seconds=4.5, coins=4.5)
    (tmp_path / "broken.json").write_text("{")
    statuses = read_statuses(tmp_path)
    assert list(statuses) == ["lab-cpu0"]
    row = format_table(statuses).splitlines()[1].split()
    assert row == ["lab-cpu0", "running", "12", "3", "4.5", "4.500"]
