"""Leases as JSON bytes: `cpushare.protocol.lease_document`, byte for byte as the market's
JSON encoder (`market.responses.encode`) writes it, without building its dicts; and so the
answers of a batch's results (`recorded_json`).

A lease names its program and limits, which nearly every lease of a batch shares: their
JSON is made once and kept (`PROGRAMS`, `LIMITS` of them at most), and a lease's own
bytes are its numbers and its input's base64 put around them. A lease is the market's most
frequent reply, several of them per request in batch leasing.
"""

from __future__ import annotations

import binascii
import functools

from cpushare import protocol
from cpushare.limits import JobLimits
from market.agreement import Recorded
from market.leasing import Lease
from market.responses import encode

# Programs and limits whose JSON is kept: a market serves few of each at a time.
PROGRAMS = 256
LIMITS = 256


@functools.lru_cache(maxsize=PROGRAMS)
def _program(sha256: str, size: int) -> bytes:
    return encode({"sha256": sha256, "size": size, "url": f"/v1/programs/{sha256}"})


@functools.lru_cache(maxsize=LIMITS, typed=True)
def _limits(cpu_seconds: int, wall_seconds: float, memory_bytes: int, output_bytes: int) -> bytes:
    # Keyed by the values (hashing a JobLimits runs Python), typed: 120 is not 120.0.
    limits = JobLimits(cpu_seconds, wall_seconds, memory_bytes, output_bytes)
    return encode(protocol.lease_document(0, 0, "", 0, b"", limits, 0.0, 0)["limits"])


@functools.lru_cache(maxsize=16, typed=True)
def _number(value: float) -> bytes:
    return encode(value)


_LEASE = b'{"lease":%d,"job":%d,"program":%s,"input":"%s","limits":%s,"lease_seconds":%s,"seat":%d}'


def lease_json(lease: Lease, lease_seconds: float) -> bytes:
    """protocol.lease_document of `lease`, encoded."""
    return _written(_LEASE, lease, binascii.b2a_base64(lease.input, newline=False), lease_seconds)


def _written(template: bytes, lease: Lease, data: bytes | int, lease_seconds: float) -> bytes:
    """A lease document of `template`, its input field `data` (the input in base64, or its
    size in a BLOBS document)."""
    limits = lease.limits
    return template % (
        lease.id,
        lease.job_id,
        _program(lease.program_sha256, lease.program_size),
        data,
        _limits(limits.cpu_seconds, limits.wall_seconds, limits.memory_bytes, limits.output_bytes),
        _number(lease_seconds),
        lease.seat,
    )


def leases_json(leases: list[Lease], lease_seconds: float) -> bytes:
    """`{"leases": [...]}`: a lease batch's reply, encoded."""
    return b'{"leases":[%s]}' % b",".join(lease_json(lease, lease_seconds) for lease in leases)


_BLOB_LEASE = (
    b'{"lease":%d,"job":%d,"program":%s,"input_size":%d,"limits":%s,"lease_seconds":%s,"seat":%d}'
)


def leases_head(leases: list[Lease], lease_seconds: float) -> bytes:
    """`{"leases": [...]}` as a protocol.BLOBS document: each lease's input not in it
    but its size (`input_size`), the inputs following the document in its order
    (`leases_blobs`)."""
    return b'{"leases":[%s]}' % b",".join(
        _written(_BLOB_LEASE, lease, len(lease.input), lease_seconds) for lease in leases
    )


def leases_blobs(leases: list[Lease]) -> list[bytes]:
    """The inputs after a `leases_head` document, in its order."""
    return [lease.input for lease in leases]


_RECORDED = b'{"lease":%d,"status":200,"result":%d,"verdict":%s,"coins":%s,"duplicate":%s}'
_VERDICTS = {verdict: encode(verdict) for verdict in ("accepted", "rejected", "pending")}


def recorded_json(lease: int, recorded: Recorded) -> bytes:
    """A recorded result's answer in a reply to POST /v1/results: `{"lease": lease,
    "status": 200, **protocol.recorded_document(...)}`, encoded (an answer per job in batch
    leasing; 1.4 us a job in dicts and the encoder, 0.6 formatted)."""
    return _RECORDED % (
        lease,
        recorded.result_id,
        _VERDICTS.get(recorded.verdict) or encode(recorded.verdict),
        float.__repr__(recorded.millicoins / 1000).encode(),
        b"true" if recorded.duplicate else b"false",
    )
