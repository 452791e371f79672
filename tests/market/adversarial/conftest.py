"""What the attacks share: a market with one queued job, an honest seller's lease, held
sockets and the wait for the market to drop them."""

from __future__ import annotations

import resource
import selectors
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from cpushare.order import SellOrder
from livecd.market_process import MarketProcess
from market.buyer import BuyerClient
from market.tls import self_signed


@dataclass
class Held:
    """A socket an attacker holds open, and when it was opened."""

    sock: socket.socket
    opened: float


@dataclass(frozen=True)
class Sale:
    """A market with a job queued for an honest seller's order."""

    market: MarketProcess
    order: SellOrder
    job: int
    verify: str | bool


def honest_lease(sale: Sale) -> requests.Response:
    """An honest seller's lease request, as the market's contract has it."""
    return requests.post(
        f"{sale.market.url}/v1/lease",
        json={"wait": 0, "seller": "honest"},
        auth=(sale.order.order_id, sale.order.secret),
        verify=sale.verify,
        timeout=10,
    )


def queue_job(market: MarketProcess, fsdither: bytes, tmp_path: Path, verify: str | bool) -> Sale:
    buyer = BuyerClient(market.url, market.account("lab").api_key)
    buyer.verify = verify
    job = buyer.submit(buyer.upload_program(fsdither), [b"P5\n1 1\n255\n\x80"])[0]
    order = market.order("lab", tmp_path / "lab.cpu")
    return Sale(market, order, job, verify)


def still_open(held: list[Held]) -> int:
    """How many of the held sockets the market has not closed (a 408 reply counts as
    closing: the market aborts right after it)."""
    count = 0
    for h in held:
        h.sock.setblocking(False)
        try:
            h.sock.recv(4096)  # a TLS socket cannot peek; what is read here is not needed
        except (BlockingIOError, ssl.SSLWantReadError):
            count += 1
        except OSError:
            pass
    return count


def lifetimes(held: list[Held], limit: float) -> tuple[list[float], int]:
    """Seconds each held socket lived until the market closed it, waiting at most `limit`
    seconds past the last one's opening; and how many were still open then."""
    selector = selectors.DefaultSelector()
    for h in held:
        h.sock.setblocking(False)
        selector.register(h.sock, selectors.EVENT_READ, h)
    lived: list[float] = []
    give_up = max(h.opened for h in held) + limit
    while selector.get_map() and time.monotonic() < give_up:
        for key, _ in selector.select(timeout=0.2):
            h = key.data
            try:
                if h.sock.recv(65536):
                    continue  # the 408 reply: its end follows
            except (BlockingIOError, ssl.SSLWantReadError):
                continue
            except OSError:
                pass
            lived.append(time.monotonic() - h.opened)
            selector.unregister(h.sock)
    left = len(selector.get_map())
    selector.close()
    return lived, left


@pytest.fixture
def held() -> Iterator[list[Held]]:
    """Sockets a test holds open; all closed when it ends."""
    sockets: list[Held] = []
    yield sockets
    for h in sockets:
        h.sock.close()


@pytest.fixture
def many_files() -> Iterator[None]:
    """Room for a thousand sockets in this process (the soft limit is often 1024)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 4096 if hard == resource.RLIM_INFINITY else min(hard, 4096)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = self_signed(["127.0.0.1"])
    (tmp_path / "cert.pem").write_bytes(cert)
    (tmp_path / "key.pem").write_bytes(key)
    return tmp_path / "cert.pem", tmp_path / "key.pem"


@pytest.fixture
def tls_market(tmp_path: Path, tls_files: tuple[Path, Path]) -> Iterator[MarketProcess]:
    process = MarketProcess(tmp_path, lease_seconds=30, tls=tls_files).start()
    yield process
    process.stop(kill=True)
