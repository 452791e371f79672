"""The attacker's side: a real market on loopback, raw HTTP, distinct machines simulated by
distinct loopback source addresses (127.0.0.N), held sockets and the wait for the market to
drop them."""

from __future__ import annotations

import base64
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

from livecd.market_process import Host, MarketProcess, source_session
from market.buyer import BuyerClient
from market.dialect import Location
from market.tls import self_signed


@pytest.fixture
def slow_market(tmp_path: Path, market_location: Location) -> Iterator[MarketProcess]:
    """A market whose leases outlast each test: nothing expires behind an attack's back."""
    process = MarketProcess(tmp_path, db=market_location, lease_seconds=600).start()
    yield process
    process.stop(kill=True)


@dataclass
class Seller:
    """One enrolled host speaking raw HTTP from its own source address."""

    market: MarketProcess
    host: Host

    def post(self, path: str, **body: object) -> requests.Response:
        return source_session(self.host.source).post(
            f"{self.market.url}{path}", json=body, auth=self.host.auth, timeout=30
        )

    def lease(self, seat: int = 0) -> requests.Response:
        return self.post("/v1/lease", wait=0, seat=seat)

    def result(self, lease: int, output: bytes, cpu: float = 1.0) -> requests.Response:
        return self.post(
            f"/v1/leases/{lease}/result",
            outcome="ok",
            exit_status=0,
            output=base64.b64encode(output).decode(),
            cpu_seconds=cpu,
            wall_seconds=cpu,
        )


class Fleet:
    """Sellers on demand: each a new order of `account` enrolled from `source`."""

    def __init__(self, market: MarketProcess, tmp_path: Path) -> None:
        self.market = market
        self.tmp_path = tmp_path
        self.count = 0

    def seller(self, account: str, source: str, seats: int = 1) -> Seller:
        self.count += 1
        order = self.market.order(account, self.tmp_path / f"{account}-{self.count}.cpu")
        return Seller(self.market, self.market.enroll(order, seats=seats, source=source))


@pytest.fixture
def fleet(slow_market: MarketProcess, tmp_path: Path) -> Fleet:
    for name in ("alice", "bob", "carol", "mallory"):
        slow_market.account(name)
    return Fleet(slow_market, tmp_path)


@pytest.fixture
def lab(slow_market: MarketProcess) -> BuyerClient:
    """A buyer with coins."""
    return BuyerClient(slow_market.url, slow_market.account("lab", coins=100_000).api_key)


@dataclass
class Held:
    """A socket an attacker holds open, and when it was opened."""

    sock: socket.socket
    opened: float


@dataclass(frozen=True)
class Sale:
    """A market with a job queued for an honest host enrolled with its own order."""

    market: MarketProcess
    host: Host
    job: int
    verify: str | bool


def honest_lease(sale: Sale) -> requests.Response:
    """An honest seller's lease request, as the market's contract has it."""
    return requests.post(
        f"{sale.market.url}/v1/lease",
        json={"wait": 0, "seat": 0},
        auth=sale.host.auth,
        verify=sale.verify,
        timeout=10,
    )


def queue_job(market: MarketProcess, fsdither: bytes, tmp_path: Path, verify: str | bool) -> Sale:
    # One host, one job: these attacks are about connections, not agreement (replicas=1).
    buyer = BuyerClient(market.url, market.account("lab", coins=10_000).api_key)
    buyer.verify = verify
    job = buyer.submit(buyer.upload_program(fsdither), [b"P5\n1 1\n255\n\x80"], replicas=1)[0]
    order = market.order("lab", tmp_path / "lab.cpu")
    return Sale(market, market.enroll(order), job, verify)


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


def honest_lease_under_attack(sale: Sale, held: list[Held], deadline: float) -> list[float]:
    """With the attacker's sockets held, an honest seller leases the queued job at once;
    then every held socket is dropped within `deadline` seconds. Their lifetimes."""
    started = time.monotonic()
    lease = honest_lease(sale)
    assert lease.status_code == 200 and lease.json()["job"] == sale.job
    assert time.monotonic() - started < 2.0
    lived, left = lifetimes(held, deadline + 2)
    assert left == 0, f"{left} of {len(held)} connections still held after {deadline + 2} s"
    assert max(lived) <= deadline
    return lived


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
