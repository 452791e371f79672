"""A hostile market: oversized, malformed, mistyped replies and a program that does not
match its sha256. The seller logs each one and keeps running."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import ClassVar

import pytest
from loopback_http import serving
from seller_processes import StartSeller, stand_in_order

from cpushare.seller.host import SEATS_PER_SELLER

PROGRAM = b"\x7fELF not really"
GOOD_LEASE = {
    "lease": 7,
    "job": 3,
    "program": {"sha256": hashlib.sha256(PROGRAM).hexdigest(), "size": len(PROGRAM), "url": "/x"},
    "input": base64.b64encode(b"in").decode(),
    "limits": {
        "cpu_seconds": 5,
        "wall_seconds": 10,
        "memory_bytes": 64 << 20,
        "output_bytes": 1024,
    },
    "lease_seconds": 30,
    "seat": 0,
}
ENROLLED = {"host": "host-1", "secret": "k" * 43, "seats": SEATS_PER_SELLER, "order": "o-victim"}


def batch(*leases: object) -> bytes:
    """A batch lease reply holding `leases`."""
    return json.dumps({"leases": list(leases)}).encode()


# What the fake market answers to successive lease requests; then 204 for ever.
REPLIES: list[bytes] = [
    b"x" * (25 << 20),
    b"{not json",
    b"[1, 2, 3]",
    batch({**GOOD_LEASE, "lease": "seven"}),
    batch({**GOOD_LEASE, "program": {"sha256": "../../etc/passwd", "size": -1}}),
    batch({**GOOD_LEASE, "seat": 5}),  # not a seat this seller asked for
    batch(GOOD_LEASE),  # its program download does not match the sha256
]


class HostileMarket(BaseHTTPRequestHandler):
    replies: ClassVar[list[bytes]] = []

    def log_message(self, *_: object) -> None:
        pass

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path == "/v1/hosts":
            self._send(201, json.dumps(ENROLLED).encode())
        elif self.path == "/v1/leases" and self.replies:
            self._send(200, self.replies.pop(0))
        else:
            self._send(204, b"")

    def do_GET(self) -> None:
        self._send(200, PROGRAM.upper())  # same size, other bytes


@pytest.fixture
def hostile() -> Iterator[str]:
    HostileMarket.replies = list(REPLIES)
    with serving(HostileMarket) as url:
        yield url


def test_hostile_replies_are_logged_and_survived(
    hostile: str, tmp_path: Path, start_seller: StartSeller
) -> None:
    seller = start_seller(stand_in_order(hostile, "o-victim", tmp_path / "victim.cpu"))
    errors = seller.wait_for("error", len(REPLIES))
    details = [e["detail"] for e in errors]
    assert {e["what"] for e in errors} == {"bad-reply"}
    for needle in (
        "larger than",
        "not JSON",
        "not a JSON object",
        "is not an integer",
        "sha256 is not 64 hex digits",
        "are not distinct seats of [0, 1]",
        "does not match its sha256",
    ):
        assert any(needle in d for d in details), (needle, details)
    assert seller.process.poll() is None
    assert not seller.events("job-finished")
    seller.stop()
    assert seller.process.returncode == 143
    status = json.loads((tmp_path / "status" / "victim.json").read_text())
    assert status["state"] == "stopped" and status["jobs_done"] == 0
