"""A request body trickled slower than the market's minimum rate: the connection is
dropped within one rate window (the handler that was reading it logs nothing), while an
honest upload slower than the window but faster than the rate goes through."""

from __future__ import annotations

import json
import socket
import time

from livecd.market_process import MarketProcess
from market.deadlines import BODY_BYTES, BODY_WINDOW
from tests.market.adversarial.conftest import Held, lifetimes


def _head(market: MarketProcess, api_key: str, length: int) -> bytes:
    return (
        f"PUT /v1/programs HTTP/1.1\r\nHost: 127.0.0.1:{market.port}\r\n"
        f"Authorization: Bearer {api_key}\r\nContent-Type: application/octet-stream\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def test_slow_body_trickle_is_dropped(market: MarketProcess, held: list[Held]) -> None:
    api_key = market.account("lab").api_key
    sock = socket.create_connection(("127.0.0.1", market.port))
    sock.sendall(_head(market, api_key, 1000))
    held.append(Held(sock, time.monotonic()))
    sock.settimeout(0.5)
    give_up = time.monotonic() + BODY_WINDOW + 3
    dropped = False
    while time.monotonic() < give_up and not dropped:
        try:
            sock.sendall(b"x")
            dropped = sock.recv(4096) == b""
        except TimeoutError:
            continue
        except OSError:
            dropped = True
    lived = time.monotonic() - held[0].opened
    assert dropped, f"a body trickled at 2 bytes/s was still read after {lived:.1f} s"
    assert BODY_WINDOW - 1 <= lived <= BODY_WINDOW + 2
    # The handler that was reading the body learns of the drop in the market's own time.
    time.sleep(1)
    log = market.log.read_text()
    assert "Traceback" not in log and "internal error" not in log, log


def test_slow_body_honest_upload_at_a_modest_rate_is_read(market: MarketProcess) -> None:
    api_key = market.account("lab").api_key
    chunk = BODY_BYTES * 2
    chunks = int(BODY_WINDOW * 1.5 / 0.5)
    sock = socket.create_connection(("127.0.0.1", market.port))
    with sock:
        sock.sendall(_head(market, api_key, chunk * chunks))
        started = time.monotonic()
        for _ in range(chunks):
            sock.sendall(b"\0" * chunk)
            time.sleep(0.5)
        assert time.monotonic() - started > BODY_WINDOW
        sock.settimeout(10)
        reply = sock.recv(65536)
    # Read to its end and judged: not an ELF, so refused, but not cut off.
    assert reply.startswith(b"HTTP/1.1 400 "), reply
    assert "not a valid job program" in json.loads(reply.split(b"\r\n\r\n", 1)[1])["error"]


def test_slow_body_that_never_comes_is_dropped(market: MarketProcess, held: list[Held]) -> None:
    api_key = market.account("lab").api_key
    sock = socket.create_connection(("127.0.0.1", market.port))
    sock.sendall(_head(market, api_key, 1 << 20))
    held.append(Held(sock, time.monotonic()))
    lived, left = lifetimes(held, BODY_WINDOW + 2)
    assert left == 0 and BODY_WINDOW - 1 <= lived[0] <= BODY_WINDOW + 1
