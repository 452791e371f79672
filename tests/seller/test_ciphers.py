"""A seller's TLS on a CPU without AES instructions: ChaCha20-Poly1305 (over TLS 1.2),
which such a CPU runs ten times faster than AES-GCM; the defaults elsewhere."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from cpushare.seller.ciphers import has_aes, suit
from cpushare.seller.http11 import Connection, pinned_context
from livecd.market_process import MarketProcess
from market.tls import pem_sha256, self_signed


@pytest.mark.parametrize(
    ("cpuinfo", "aes"),
    [
        ("processor\t: 0\nflags\t\t: fpu sse2 ssse3 aes avx\n", True),
        ("processor\t: 0\nflags\t\t: fpu sse2 syscall nx lm\n", False),  # QEMU's qemu64
        ("processor\t: 0\nFeatures\t: fp asimd aes pmull sha1\n", True),
        ("processor\t: 0\nFeatures\t: fp asimd\n", False),
        ("nothing about flags here\n", True),
    ],
)
def test_aes_instructions_are_read_from_cpuinfo(tmp_path: Path, cpuinfo: str, aes: bool) -> None:
    path = tmp_path / "cpuinfo"
    path.write_text(cpuinfo)
    assert has_aes(path) is aes
    assert has_aes(tmp_path / "absent") is True


def test_without_aes_only_chacha20_is_offered() -> None:
    context = suit(pinned_context(), aes=False)
    assert context.maximum_version is ssl.TLSVersion.TLSv1_2
    names = {c["name"] for c in context.get_ciphers() if c["protocol"] != "TLSv1.3"}
    assert names and all("CHACHA20" in name and name.startswith("ECDHE") for name in names)
    default = suit(pinned_context(), aes=True)
    assert default.maximum_version is not ssl.TLSVersion.TLSv1_2


@pytest.fixture
def market(tmp_path: Path) -> Iterator[tuple[MarketProcess, str]]:
    cert_pem, key_pem = self_signed(["127.0.0.1"])
    (tmp_path / "cert.pem").write_bytes(cert_pem)
    (tmp_path / "key.pem").write_bytes(key_pem)
    tls = (tmp_path / "cert.pem", tmp_path / "key.pem")
    with MarketProcess(tmp_path / "market", tls=tls).start() as process:
        yield process, pem_sha256(cert_pem)


@pytest.mark.parametrize(("aes", "cipher"), [(False, "CHACHA20"), (True, "AES")])
def test_the_market_speaks_the_suited_cipher(
    market: tuple[MarketProcess, str], aes: bool, cipher: str
) -> None:
    process, pin = market
    context = suit(pinned_context(), aes=aes)
    conn = Connection("127.0.0.1", process.port, timeout=10, context=context, pin=pin)
    try:
        reply = conn.request("GET", "/v1/health", {}, None, 1 << 16)
        assert reply.status == 200
        assert isinstance(conn.sock, ssl.SSLSocket)
        negotiated = conn.sock.cipher()
        assert negotiated is not None and cipher in negotiated[0]
    finally:
        conn.close()
