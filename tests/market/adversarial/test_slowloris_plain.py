"""Slowloris on plain HTTP: connections that send nothing, or half a request head, and
hold their sockets. The market drops each within 10 s, and an honest seller leases
meanwhile, even with a thousand of them held at once."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from livecd.market_process import MarketProcess
from market.deadlines import HEAD_SECONDS
from tests.market.adversarial.conftest import (
    Held,
    honest_lease_under_attack,
    queue_job,
    still_open,
)

DEADLINE = 10.0
HALF_HEAD = b"POST /v1/lease HTTP/1.1\r\nHost: market\r\nContent-Len"


def _hold(market: MarketProcess, held: list[Held], count: int) -> None:
    """`count` idle connections and `count` with half a request head."""
    for i in range(2 * count):
        sock = socket.create_connection(("127.0.0.1", market.port))
        if i % 2:
            sock.sendall(HALF_HEAD)
        held.append(Held(sock, time.monotonic()))


@pytest.mark.parametrize("count", [50, 500], ids=["100-connections", "1000-connections"])
def test_slowloris_plain_connections_are_dropped_and_sellers_still_lease(
    market: MarketProcess,
    fsdither: bytes,
    tmp_path: Path,
    held: list[Held],
    many_files: None,
    count: int,
) -> None:
    sale = queue_job(market, fsdither, tmp_path, True)
    _hold(market, held, count)
    # The market still holds most of them (the attack is on) when the seller comes.
    assert still_open(held) > count
    lived = honest_lease_under_attack(sale, held, DEADLINE)
    # Dropped by the head deadline, not by chance earlier.
    assert min(lived) >= HEAD_SECONDS - 1


def test_slowloris_half_head_is_told_408(market: MarketProcess, held: list[Held]) -> None:
    _hold(market, held, 1)
    half = held[1].sock
    half.settimeout(DEADLINE)
    assert half.recv(4096).startswith(b"HTTP/1.1 408 ")
