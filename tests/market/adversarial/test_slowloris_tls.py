"""Slowloris on TLS: connections that never start the handshake, that finish it and then
send nothing, or half a request head. The market drops each within 10 s of its opening,
handshake included, and an honest seller leases over TLS meanwhile."""

from __future__ import annotations

import socket
import ssl
import time
from pathlib import Path

from livecd.market_process import MarketProcess
from market.deadlines import HANDSHAKE_SECONDS
from tests.market.adversarial.conftest import Held, honest_lease_under_attack, queue_job, still_open

DEADLINE = 10.0
COUNT = 100
HALF_HEAD = b"POST /v1/lease HTTP/1.1\r\nHost: market\r\nContent-Len"


def test_slowloris_tls_connections_are_dropped_and_sellers_still_lease(
    tls_market: MarketProcess,
    tls_files: tuple[Path, Path],
    fsdither: bytes,
    tmp_path: Path,
    held: list[Held],
    many_files: None,
) -> None:
    sale = queue_job(tls_market, fsdither, tmp_path, str(tls_files[0]))
    context = ssl.create_default_context(cafile=str(tls_files[0]))
    for i in range(3 * COUNT):
        sock: socket.socket = socket.create_connection(("127.0.0.1", tls_market.port))
        opened = time.monotonic()
        if i % 3:
            sock = context.wrap_socket(sock, server_hostname="127.0.0.1")
        if i % 3 == 2:
            sock.sendall(HALF_HEAD)
        held.append(Held(sock, opened))
    assert still_open(held) > COUNT
    lived = honest_lease_under_attack(sale, held, DEADLINE)
    assert min(lived) >= HANDSHAKE_SECONDS - 1
