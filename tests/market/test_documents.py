"""Leases written as JSON bytes (market.documents) are byte for byte the documents the
protocol declares (cpushare.protocol.lease_document) as the market encodes them, and the
seller reads them back as they were."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from cpushare import protocol
from cpushare.limits import JobLimits
from market import documents
from market.agreement import Recorded
from market.leasing import Lease
from market.responses import encode

ids = st.integers(min_value=1, max_value=protocol.MAX_ID)
leases = st.builds(
    Lease,
    id=ids,
    job_id=ids,
    program_sha256=st.text("0123456789abcdef", min_size=64, max_size=64),
    program_size=st.integers(min_value=1, max_value=1 << 24),
    input=st.binary(max_size=300),
    limits=st.builds(
        JobLimits,
        cpu_seconds=st.integers(min_value=1, max_value=86_400),
        wall_seconds=st.floats(min_value=0.5, max_value=1e6, allow_nan=False),
        memory_bytes=st.integers(min_value=1 << 20, max_value=1 << 34),
        output_bytes=st.integers(min_value=0, max_value=1 << 26),
    ),
    deadline=st.floats(min_value=0, max_value=2e9),
    seat=st.integers(min_value=0, max_value=protocol.MAX_SEATS - 1),
)
lease_seconds = st.sampled_from([60.0, 0.5, 2.0, 1e-3, 3600.0, 5.25])


def _document(lease: Lease, seconds: float) -> dict[str, object]:
    return protocol.lease_document(
        lease.id,
        lease.job_id,
        lease.program_sha256,
        lease.program_size,
        lease.input,
        lease.limits,
        seconds,
        lease.seat,
    )


@given(leases, lease_seconds)
def test_a_lease_is_written_as_its_document_is_encoded(lease: Lease, seconds: float) -> None:
    assert documents.lease_json(lease, seconds) == encode(_document(lease, seconds))


@given(st.lists(leases, max_size=protocol.MAX_SEATS), lease_seconds)
def test_a_batch_of_leases_is_written_as_its_document_is_encoded(
    batch: list[Lease], seconds: float
) -> None:
    written = documents.leases_json(batch, seconds)
    assert written == encode({"leases": [_document(lease, seconds) for lease in batch]})
    assert json.loads(written)["leases"] == [_document(lease, seconds) for lease in batch]


def test_limits_equal_in_value_but_not_in_type_are_written_apart() -> None:
    """The limits' JSON is kept by value: 120 and 120.0 are equal keys, not equal JSON."""
    for wall in (120, 120.0, 120):
        lease = Lease(1, 2, "a" * 64, 3, b"in", JobLimits(60, wall, 1 << 20, 1 << 10), 0.0, 0)  # type: ignore[arg-type]
        assert documents.lease_json(lease, 60.0) == encode(_document(lease, 60.0))


@given(
    ids,
    st.builds(
        Recorded,
        result_id=ids,
        verdict=st.sampled_from(["accepted", "rejected", "pending", "other"]),
        millicoins=st.integers(min_value=0, max_value=1 << 50),
        duplicate=st.booleans(),
    ),
)
def test_a_recorded_result_is_answered_as_its_document_is_encoded(
    lease: int, recorded: Recorded
) -> None:
    document = protocol.recorded_document(
        recorded.result_id, recorded.verdict, recorded.millicoins, recorded.duplicate
    )
    expected = encode({"lease": lease, "status": 200, **document})
    assert documents.recorded_json(lease, recorded) == expected
