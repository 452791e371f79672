"""The seller's small parts: reply checks and the program cache."""

from __future__ import annotations

import json

import pytest

from cpushare.jail import JobResult
from cpushare.jail.model import Outcome
from cpushare.protocol import (
    BLOBS,
    Blobs,
    media_type,
    parse_lease,
    parse_leases,
    parse_next,
    parse_recorded,
    result_document,
    results_body,
    split_blobs,
)
from cpushare.replies import BadReply, Refused, Unreachable
from cpushare.seller.programs import ProgramCache

LEASE = {
    "lease": 1,
    "job": 2,
    "program": {"sha256": "a" * 64, "size": 10},
    "input": "aW4=",
    "limits": {"cpu_seconds": 5, "wall_seconds": 10, "memory_bytes": 1 << 24, "output_bytes": 9},
    "lease_seconds": 30,
}


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


def test_program_cache_drops_the_least_recently_used() -> None:
    cache = ProgramCache(capacity=10)
    cache.put("a", b"12345")
    cache.put("b", b"12345")
    assert cache.get("a") == b"12345"
    cache.put("c", b"12345")
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (b"12345", None, b"12345")


def test_a_batch_of_results_in_pieces_is_the_json_of_each_result() -> None:
    results = [
        (7, JobResult(Outcome.OK, 0, b"\x00\xffout", 1.5, 2.0, 'a "quoted" detail')),
        (9, JobResult(Outcome.OUTPUT_LIMIT, None, b"", 0.1, 0.2, "")),
    ]
    doc = json.loads(b"".join(results_body(results)))
    assert doc == {"results": [{"lease": lease, **result_document(r)} for lease, r in results]}


def test_a_batch_of_results_may_ask_for_the_next_leases() -> None:
    results = [(7, JobResult(Outcome.OK, 0, b"out", 1.5, 2.0, ""))]
    ahead = {"seats": [0, 3], "max_memory_bytes": 1 << 20}
    doc = json.loads(b"".join(results_body(results, ahead)))
    assert doc == {"results": [{"lease": 7, **result_document(results[0][1])}], "next": ahead}


def test_the_next_leases_of_a_results_reply_are_checked() -> None:
    # A market that leases only apart answers no `next`: the seats are still free.
    assert parse_next({"results": []}, [0]) is None
    offers = parse_next({"next": {"leases": [{**LEASE, "seat": 3}]}}, [0, 3])
    assert isinstance(offers, list) and [o.seat for o in offers] == [3]
    with pytest.raises(BadReply, match="not distinct seats"):
        parse_next({"next": {"leases": [{**LEASE, "seat": 1}]}}, [0, 3])
    refused = parse_next({"next": {"status": 400, "error": "seat 9"}}, [0])
    assert isinstance(refused, Refused) and refused.status == 400
    assert isinstance(parse_next({"next": {"status": 507, "error": "full"}}, [0]), Unreachable)
    with pytest.raises(BadReply):
        parse_next({"next": []}, [0])


def _blob_leases(*sizes: int) -> dict[str, object]:
    return {
        "leases": [
            {**{k: v for k, v in LEASE.items() if k != "input"}, "input_size": size, "seat": seat}
            for seat, size in enumerate(sizes)
        ]
    }


def test_leases_take_their_inputs_from_the_bytes_after_their_document() -> None:
    head, tail = split_blobs(b"".join([json.dumps(_blob_leases(2, 0, 3)).encode(), b"\nab\ncd"]))
    offers = parse_leases(json.loads(head), [0, 1, 2], Blobs(tail))
    assert [o.input for o in offers] == [b"ab", b"", b"\ncd"]
    for sizes, data, message in (
        ((2, 3), b"ab", "not a size of the bytes"),  # more than follow
        ((2,), b"abc", "input sizes do not add up"),  # bytes left over
        ((-1,), b"", "not a size of the bytes"),
    ):
        with pytest.raises(BadReply, match=message):
            parse_leases(_blob_leases(*sizes), [0, 1], Blobs(memoryview(data)))
    with pytest.raises(BadReply, match="in its document and in its bytes"):
        parse_lease(LEASE, Blobs(memoryview(b"in")))
    with pytest.raises(ValueError, match="no line"):
        split_blobs(b'{"leases": []}')


def test_the_blobs_walker_takes_bytes_by_size_and_names_what_does_not_fit() -> None:
    blobs = Blobs(memoryview(b"abcde"))
    assert blobs.take(2, "a") == b"ab" and blobs.take(0, "b") == b""
    with pytest.raises(ValueError, match=r"^c is not a size of the bytes that follow$"):
        blobs.take(4, "c")
    for size in (-1, True, 1.0, None):
        with pytest.raises(ValueError, match="is not a size"):
            blobs.take(size, "d")
    with pytest.raises(ValueError, match=r"^the sizes do not add up to the bytes that follow$"):
        blobs.check_used("the sizes")
    assert blobs.take(3, "e") == b"cde"
    blobs.check_used("the sizes")


def test_a_content_type_names_its_media_type_without_parameters_in_lower_case() -> None:
    assert media_type(f" {BLOBS.upper()} ; charset=utf-8") == BLOBS
    assert media_type("application/json") == "application/json"
    assert media_type("") == ""


def test_a_batch_of_results_as_blobs_has_each_output_raw_after_the_document() -> None:
    results = [
        (7, JobResult(Outcome.OK, 0, b"\x00\n\xffout", 1.5, 2.0, "")),
        (9, JobResult(Outcome.OUTPUT_LIMIT, None, b"", 0.1, 0.2, "")),
        (11, JobResult(Outcome.OK, 0, b"end", 0.1, 0.2, "")),
    ]
    ahead = {"seats": [0, 3]}
    head, tail = split_blobs(b"".join(results_body(results, ahead, blobs=True)))
    doc = json.loads(head)
    assert doc["next"] == ahead
    for (lease, result), item in zip(results, doc["results"], strict=True):
        expected = {"lease": lease, **result_document(result, output=False)}
        assert item == {**expected, "output_size": len(result.output)}
    assert tail.tobytes() == b"\x00\n\xffoutend"
