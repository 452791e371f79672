"""Shared pieces of the order tests: a valid order document."""

from __future__ import annotations

import pytest

GOOD = """\
format = 1

[market]
url = "https://market.example.org:8443"
cert_sha256 = "{pin}"

[order]
id = "o-1234abcd"
secret = "s3cret-s3cret-s3cret-s3cret"
account = "libcaca"

[seller]
nice = 19
max_memory_mb = 128
max_cpu_seconds = 30
""".replace("{pin}", "ab" * 32)


@pytest.fixture
def good() -> str:
    """The text of a valid order."""
    return GOOD
