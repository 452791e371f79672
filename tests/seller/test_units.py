"""The seller's small parts: backoff, reply checks, status file, program cache."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from cpushare.protocol import parse_lease, parse_recorded
from cpushare.seller.agent import ProgramCache
from cpushare.seller.backoff import Backoff
from cpushare.seller.client import BadReply
from cpushare.seller.status import SellerStatus, StatusFile

LEASE = {
    "lease": 1,
    "job": 2,
    "program": {"sha256": "a" * 64, "size": 10},
    "input": "aW4=",
    "limits": {"cpu_seconds": 5, "wall_seconds": 10, "memory_bytes": 1 << 24, "output_bytes": 9},
    "lease_seconds": 30,
}


def test_backoff_grows_to_its_cap_with_jitter_and_resets() -> None:
    backoff = Backoff(base=1, cap=8, rng=random.Random(1))
    delays = [backoff.next_delay() for _ in range(12)]
    bounds = [1, 2, 4, 8] + [8] * 8
    assert all(b / 10 <= d <= b for d, b in zip(delays, bounds, strict=True))
    assert len(set(delays)) == len(delays)
    backoff.reset()
    assert backoff.next_delay() <= 1


def test_a_good_lease_parses() -> None:
    offer = parse_lease(LEASE)
    assert (offer.lease, offer.job, offer.input, offer.memory_bytes) == (1, 2, b"in", 1 << 24)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"lease": True}, "lease is not an integer"),
        ({"limits": []}, "limits is not an object"),
        ({"input": "é"}, "not valid base64"),
        ({"program": {"sha256": "A" * 64, "size": 1}}, "64 hex digits"),
        ({"lease_seconds": float("nan")}, "lease_seconds is not a number"),
        ({"limits": {**LEASE["limits"], "cpu_seconds": -1}}, "cpu_seconds"),  # type: ignore[dict-item]
    ],
)
def test_a_bad_lease_names_its_problem(change: dict[str, object], message: str) -> None:
    with pytest.raises(BadReply, match=message):
        parse_lease({**LEASE, **change})


def test_result_replies_are_checked() -> None:
    assert parse_recorded({"verdict": "accepted", "coins": 1.5}).coins == 1.5
    with pytest.raises(BadReply):
        parse_recorded({"verdict": "accepted", "coins": "lots"})
    with pytest.raises(BadReply):
        parse_recorded({"verdict": "maybe"})


def test_status_file_is_replaced_whole(tmp_path: Path) -> None:
    status = StatusFile(tmp_path / "run", Path("orders/lab.cpu"), SellerStatus("o-1", "m"))
    status.update(state="running", job=4)
    doc = json.loads((tmp_path / "run" / "lab.json").read_text())
    assert (doc["order"], doc["state"], doc["job"]) == ("o-1", "running", 4)
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["lab.json"]


def test_program_cache_drops_the_least_recently_used() -> None:
    cache = ProgramCache(capacity=10)
    cache.put("a", b"12345")
    cache.put("b", b"12345")
    assert cache.get("a") == b"12345"
    cache.put("c", b"12345")
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (b"12345", None, b"12345")
