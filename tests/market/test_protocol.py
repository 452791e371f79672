"""The wire contract: one JobLimits for every party, and documents the market builds that
the seller parses and the OpenAPI schemas describe."""

from __future__ import annotations

import json
import math

import jsonschema_rs
import pytest

from cpushare.jail import JobResult, Limits, Outcome
from cpushare.limits import BOUNDS, JobLimits, default_wall_seconds
from cpushare.protocol import (
    lease_document,
    parse_lease,
    parse_recorded,
    recorded_document,
    result_document,
    results_body,
    schemas,
)
from cpushare.replies import BadReply
from market.app import openapi_document

EXTREMES = [
    JobLimits(**{name: getattr(bound, end) for name, bound in BOUNDS.items()})
    for end in ("low", "high")
]


def _validate(doc: object, name: str) -> None:
    # The schemas refer to each other as OpenAPI components do.
    jsonschema_rs.validate({**schemas()[name], "components": {"schemas": schemas()}}, doc)


@pytest.mark.parametrize("limits", EXTREMES)
def test_every_market_job_fits_the_jail(limits: JobLimits) -> None:
    assert limits.problems() == []
    jail = Limits.for_job(limits, nice=7)
    assert (jail.cpu_seconds, jail.memory_bytes, jail.nice) == (
        limits.cpu_seconds,
        limits.memory_bytes,
        7,
    )


def test_limits_out_of_bounds_are_each_named() -> None:
    problems = JobLimits(cpu_seconds=0, memory_bytes=1).problems()
    assert problems == [
        "limits.cpu_seconds is 0: it must be between 1 and 86400",
        f"limits.memory_bytes is 1: it must be between {1 << 20} and {4 << 30}",
    ]


def test_the_default_wall_clock_grows_with_the_cpu_time() -> None:
    assert JobLimits().wall_seconds == default_wall_seconds(JobLimits().cpu_seconds) == 300
    assert default_wall_seconds(3600) == 18000


@pytest.mark.parametrize("limits", EXTREMES)
def test_a_built_lease_matches_its_schema_and_parses_back(limits: JobLimits) -> None:
    doc = lease_document(3, 4, "a" * 64, 10, b"input", limits, 60.0, 0)
    _validate(doc, "Lease")
    offer = parse_lease(doc)
    assert (offer.lease, offer.job, offer.input, offer.limits) == (3, 4, b"input", limits)


def test_a_lease_outside_the_contract_is_refused() -> None:
    too_big = JobLimits(memory_bytes=BOUNDS["memory_bytes"].high + 1)
    doc = lease_document(3, 4, "a" * 64, 10, b"", too_big, 60.0, 0)
    with pytest.raises(BadReply, match="memory_bytes"):
        parse_lease(doc)


def test_a_recorded_reply_matches_its_schema_and_parses_back() -> None:
    doc = recorded_document(9, "accepted", 1500, False)
    _validate(doc, "Recorded")
    assert parse_recorded(doc).coins == 1.5


def test_every_reference_of_the_document_resolves() -> None:
    doc = openapi_document()
    refs: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            refs.extend(v for k, v in node.items() if k == "$ref")
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    assert refs
    for ref in refs:
        assert ref.removeprefix("#/components/schemas/") in doc["components"]["schemas"], ref


# A lease's fields of the wrong JSON type or out of bounds: each is refused by name.
WRONG_FIELDS = [
    ("lease", True),
    ("lease", 3.0),
    ("lease", 0),
    ("lease", "3"),
    ("job", None),
    ("lease_seconds", math.nan),
    ("lease_seconds", math.inf),
    ("lease_seconds", 0.5),
    ("lease_seconds", False),
    ("input", 7),
    ("program", []),
    ("limits", "x"),
]


@pytest.mark.parametrize(("name", "value"), WRONG_FIELDS)
def test_a_lease_field_of_the_wrong_type_or_range_is_refused(name: str, value: object) -> None:
    doc = lease_document(3, 4, "a" * 64, 10, b"input", JobLimits(), 60.0, 0)
    doc[name] = value
    with pytest.raises(BadReply, match=name):
        parse_lease(doc)


@pytest.mark.parametrize(
    ("name", "value"), [("wall_seconds", math.nan), ("cpu_seconds", 2.0), ("output_bytes", True)]
)
def test_a_limit_of_the_wrong_type_or_range_is_refused(name: str, value: object) -> None:
    doc = lease_document(3, 4, "a" * 64, 10, b"input", JobLimits(), 60.0, 0)
    doc["limits"][name] = value
    with pytest.raises(BadReply, match=name):
        parse_lease(doc)


def test_a_numbers_type_is_the_fields_whichever_json_gave() -> None:
    doc = lease_document(3, 4, "a" * 64, 10, b"input", JobLimits(), 60.0, 0)
    doc["lease_seconds"] = 60
    doc["limits"]["wall_seconds"] = 120
    offer = parse_lease(doc)
    assert type(offer.lease_seconds) is float and type(offer.wall_seconds) is float
    assert (offer.lease_seconds, offer.wall_seconds) == (60.0, 120.0)


RESULTS = [
    JobResult(Outcome.OK, 0, b"out", 0.012, 0.0345678, "exit status 0"),
    JobResult(Outcome.CPU_LIMIT, None, b"", 30.01, 31.5, "killed at the CPU limit of 30 s"),
    JobResult(Outcome.EXIT, 3, b"\x00\xff", 0.0, 1e-07, 'said "\u00e9t\u00e9"\n\ttab \x01'),
    JobResult(Outcome.OK, 0, b"x", math.inf, 2.0, "exit status 0"),  # written by json.dumps
    JobResult(Outcome.OK, 0, b"x", 1, 2, "exit status 0"),  # ints, as a caller may give
]


def test_each_posted_result_is_its_result_document() -> None:
    leases = list(range(1, len(RESULTS) + 1))
    body = b"".join(results_body(list(zip(leases, RESULTS, strict=True)), {"seats": [1]}))
    doc = json.loads(body)
    expected = [{"lease": n, **result_document(r)} for n, r in zip(leases, RESULTS, strict=True)]
    assert doc == {"results": expected, "next": {"seats": [1]}}
    # Byte for byte as json.dumps writes each result (its output aside).
    for n, result in zip(leases, RESULTS, strict=True):
        head = json.dumps({"lease": n, **result_document(result, output=False)})[:-1]
        assert head.encode() in body
