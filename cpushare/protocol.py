"""The market's replies as the seller checks them: shape, types and bounds, or BadReply."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Any

from cpushare.seller.client import BadReply

SHA256_HEX = re.compile(r"[0-9a-f]{64}")
MAX_PROGRAM_BYTES = 16 << 20
MAX_INPUT_BYTES = 16 << 20


@dataclass(frozen=True)
class LeaseOffer:
    """A leased job, checked."""

    lease: int
    job: int
    program_sha256: str
    program_size: int
    input: bytes
    cpu_seconds: int
    wall_seconds: float
    memory_bytes: int
    output_bytes: int
    lease_seconds: float


def _int(doc: dict[str, Any], key: str, low: int, high: int) -> int:
    value = doc.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise BadReply(f"the lease's {key} is not an integer from {low} to {high}: {value!r:.40}")
    return value


def _number(doc: dict[str, Any], key: str, low: float, high: float) -> float:
    value = doc.get(key)
    if not isinstance(value, int | float) or isinstance(value, bool) or not low <= value <= high:
        raise BadReply(f"the lease's {key} is not a number from {low} to {high}: {value!r:.40}")
    return float(value)


def _table(doc: dict[str, Any], key: str) -> dict[str, Any]:
    value = doc.get(key)
    if not isinstance(value, dict):
        raise BadReply(f"the lease's {key} is not an object")
    return value


def parse_lease(doc: dict[str, Any]) -> LeaseOffer:
    """A LeaseOffer from the lease reply, or BadReply naming what is wrong."""
    program = _table(doc, "program")
    limits = _table(doc, "limits")
    sha256 = program.get("sha256")
    if not isinstance(sha256, str) or not SHA256_HEX.fullmatch(sha256):
        raise BadReply("the lease's program sha256 is not 64 hex digits")
    encoded = doc.get("input")
    if not isinstance(encoded, str) or len(encoded) > MAX_INPUT_BYTES * 4 // 3 + 4:
        raise BadReply("the lease's input is not a base64 string of a bounded size")
    try:
        data = base64.b64decode(encoded, validate=True)
    except ValueError:  # binascii.Error, or non-ASCII text
        raise BadReply("the lease's input is not valid base64") from None
    return LeaseOffer(
        lease=_int(doc, "lease", 1, 2**62),
        job=_int(doc, "job", 1, 2**62),
        program_sha256=sha256,
        program_size=_int(program, "size", 1, MAX_PROGRAM_BYTES),
        input=data,
        cpu_seconds=_int(limits, "cpu_seconds", 1, 7 * 86400),
        wall_seconds=_number(limits, "wall_seconds", 1, 7 * 86400),
        memory_bytes=_int(limits, "memory_bytes", 1, 1 << 42),
        output_bytes=_int(limits, "output_bytes", 0, 1 << 32),
        lease_seconds=_number(doc, "lease_seconds", 1, 86400),
    )


@dataclass(frozen=True)
class Recorded:
    """The market's answer to a posted result."""

    verdict: str
    coins: float


def parse_recorded(doc: dict[str, Any]) -> Recorded:
    verdict = doc.get("verdict")
    coins = doc.get("coins", 0)
    if verdict not in ("pending", "accepted", "rejected"):
        raise BadReply(
            f"the result reply's verdict is not pending/accepted/rejected: {verdict!r:.40}"
        )
    if not isinstance(coins, int | float) or isinstance(coins, bool) or not 0 <= coins < 1e9:
        raise BadReply("the result reply's coins is not a sensible number")
    return Recorded(verdict, float(coins))
