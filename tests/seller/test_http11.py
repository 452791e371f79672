"""The seller's own HTTP/1.1 (cpushare.seller.http11 under MarketClient): against the real
market on loopback, plain and pinned TLS, and against a raw server that answers what a
hostile market or a broken proxy may send. Every bad reply is one of the client's
errors, naming what was wrong; none is a traceback."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest

import cpushare
from cpushare.order import SellOrder
from cpushare.protocol import parse_leases
from cpushare.replies import BadReply, Unreachable
from cpushare.seller.client import MarketClient
from livecd.market_process import MarketProcess
from market.buyer import BuyerClient
from market.tls import self_signed

LEASE = {"seller": "test", "max_memory_bytes": 1 << 30, "max_cpu_seconds": 600}
# What the raw server does for one request: send these bytes (and keep the connection),
# close the connection without a reply (None), or say nothing for so many seconds first.
Step = bytes | float | None


def _reply(body: bytes, *headers: str, status: str = "200 OK") -> bytes:
    head = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class RawServer:
    """Loopback server answering raw bytes: `connections[i][j]` is its answer to the
    j-th request on its i-th connection; a connection ends after its last answer. Notes
    each request line with the number of the connection it came on."""

    def __init__(self, connections: list[list[Step]]) -> None:
        self.connections = connections
        self.requests: list[tuple[int, str]] = []
        self.idle_closed = threading.Event()  # a connection ended after its last answer
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(30)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        for number, steps in enumerate(self.connections):
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn, conn.makefile("rb") as reader:
                for step in steps:
                    head = _read_request(reader)
                    if head is None:
                        break
                    self.requests.append((number, head))
                    if isinstance(step, float):
                        time.sleep(step)
                    if not isinstance(step, bytes):
                        break
                    conn.sendall(step)
                else:
                    self.idle_closed.set()

    def close(self) -> None:
        self.listener.close()
        self.thread.join(10)


def _read_request(reader: BinaryIO) -> str | None:
    """The request line of one request read whole (head and body), or None at its end."""
    lines = []
    while (line := reader.readline()) not in (b"\r\n", b""):
        lines.append(line.decode().strip())
    if not lines:
        return None
    fields = dict(line.lower().split(": ", 1) for line in lines[1:])
    reader.read(int(fields.get("content-length", 0)))
    return lines[0]


@pytest.fixture
def raw() -> Iterator[list[RawServer]]:
    servers: list[RawServer] = []
    yield servers
    for server in servers:
        server.close()


def _client(server: RawServer, timeout: float = 5.0) -> MarketClient:
    return MarketClient(SellOrder(server.url, "o-http", "s" * 24, "lab"), timeout=timeout)


# --- against the real market ---------------------------------------------------------


@pytest.fixture(params=["http", "pinned-tls"])
def market(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MarketProcess]:
    tls = None
    if request.param == "pinned-tls":
        cert_pem, key_pem = self_signed(["127.0.0.1"])
        (tmp_path / "cert.pem").write_bytes(cert_pem)
        (tmp_path / "key.pem").write_bytes(key_pem)
        tls = (tmp_path / "cert.pem", tmp_path / "key.pem")
    with MarketProcess(tmp_path / "market", tls=tls).start() as process:
        yield process


def test_a_seller_enrolls_leases_and_downloads_over_one_connection(
    market: MarketProcess, spin: bytes
) -> None:
    buyer = BuyerClient(market.url, market.account("lab", coins=1000).api_key, cacert=market.cert)
    sha256 = buyer.upload_program(spin)
    buyer.submit(sha256, [b"input"], replicas=1)
    market.account("volunteer")
    order = market.order("volunteer")
    assert order.cert_sha256 or not market.tls
    enrolled = MarketClient(order).request_json("POST", "/v1/hosts", {"seats": 1})
    assert enrolled is not None
    client = MarketClient(order, 10.0, (enrolled["host"], enrolled["secret"]))
    try:
        offers = parse_leases(
            client.request_json("POST", "/v1/leases", {**LEASE, "seats": [0], "wait": 0}), [0]
        )
        assert [offer.program_sha256 for offer in offers] == [sha256]
        assert client._conn is not None and client._conn.sock is not None
        local = client._conn.sock.getsockname()
        path = f"/v1/programs/{sha256}"
        assert client.request("GET", path, cap=len(spin)) == (200, spin)
        # Kept alive: the same connection (the same local port) carried both.
        assert client._conn.sock is not None and client._conn.sock.getsockname() == local
        # A reply larger than the caller expects is refused, not read.
        with pytest.raises(BadReply, match=f"larger than {len(spin) - 1} bytes"):
            client.request("GET", path, cap=len(spin) - 1)
        assert client.request("GET", path, cap=len(spin))[1] == spin
    finally:
        client.close()


def test_a_certificate_other_than_the_pinned_one_is_refused_before_any_request(
    tmp_path: Path,
) -> None:
    cert_pem, key_pem = self_signed(["127.0.0.1"])
    (tmp_path / "cert.pem").write_bytes(cert_pem)
    (tmp_path / "key.pem").write_bytes(key_pem)
    tls = (tmp_path / "cert.pem", tmp_path / "key.pem")
    with MarketProcess(tmp_path / "market", tls=tls).start() as market:
        market.account("volunteer")
        order = market.order("volunteer")
        other = SellOrder(order.market_url, order.order_id, order.secret, "lab", "0" * 64)
        with pytest.raises(Unreachable, match="does not match the order's cert_sha256"):
            MarketClient(other).request_json("POST", "/v1/hosts", {"seats": 1})
        # The request never reached the market: the order enrolled no host.
        assert MarketClient(order).request_json("POST", "/v1/hosts", {"seats": 1})


# --- what a market or a proxy in front of it may send ----------------------------------


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (_reply(b'{"a": 1}'), {"a": 1}),
        # Chunks with an extension and a trailer.
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5;x=y\r\n" + b'{"a":' + b"\r\n3\r\n 1}\r\n0\r\nX-Trailer: t\r\n\r\n",
            {"a": 1},
        ),
        # Interim replies are skipped; a reason phrase may be empty.
        (b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n" + _reply(b"{}", status="200 "), {}),
        (_reply(b"", status="204 No Content"), None),
        # HTTP/1.0 without a length: the body ends with the connection.
        (b'HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{"b": 2}', {"b": 2}),
    ],
    ids=["content-length", "chunked", "interim", "no-content", "until-close"],
)
def test_what_http_allows_is_read(raw: list[RawServer], answer: bytes, expected: object) -> None:
    raw.append(server := RawServer([[answer]]))
    client = _client(server)
    assert client.request_json("POST", "/v1/x", {"k": 1}) == expected
    client.close()


HUGE_FIELD = "X-Filler: " + "f" * 9000
MANY_FIELDS = [f"X-F{i}: v" for i in range(101)]
BIG_HEAD = [f"X-F{i}: " + "f" * 7000 for i in range(10)]


@pytest.mark.parametrize(
    ("answer", "error", "message"),
    [
        (b"HTTP/1.1 OK\r\n\r\n", Unreachable, "not an HTTP/1.x status line"),
        (b"ICY 200 OK\r\n\r\n", Unreachable, "not an HTTP/1.x status line"),
        (b"HTTP/2 200\r\n\r\n", Unreachable, "not an HTTP/1.x status line"),
        (b"", Unreachable, "closed without a reply"),
        (_reply(b"{}", HUGE_FIELD), Unreachable, "head is longer"),
        (_reply(b"{}", *BIG_HEAD), Unreachable, "head is longer"),
        (_reply(b"{}", *MANY_FIELDS), Unreachable, "more than 100 header fields"),
        (_reply(b"{}", "Bad Name: x"), Unreachable, "malformed header line"),
        (_reply(b"{}", "X-A: b", " folded"), Unreachable, "malformed header line"),
        (_reply(b"{}", "X-A: \x01"), Unreachable, "malformed header line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{}", Unreachable, "98 bytes short"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", Unreachable, "bad Content-Length"),
        (_reply(b"{}", "Content-Length: 3"), Unreachable, "bad Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: " + b"9" * 40 + b"\r\n\r\n", Unreachable, "bad"),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
            Unreachable,
            "Transfer-Encoding it may not have",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            Unreachable,
            "unknown transfer coding",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            Unreachable,
            "not hexadecimal",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}XX0\r\n\r\n",
            Unreachable,
            "does not end where its size says",
        ),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n{}", Unreachable, "short"),
        (_reply(b"{}", "Content-Encoding: gzip"), Unreachable, "encoded"),
        (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", Unreachable, "switched protocols"),
        (b"HTTP/1.1 100 Continue\r\n\r\n" * 5 + _reply(b"{}"), Unreachable, "interim"),
    ],
)
def test_a_bad_reply_is_one_clear_error(
    raw: list[RawServer], answer: bytes, error: type[Exception], message: str
) -> None:
    raw.append(server := RawServer([[answer]]))
    client = _client(server)
    with pytest.raises(error, match=message) as caught:
        client.request_json("POST", "/v1/x", {})
    assert str(caught.value).startswith("POST /v1/x: ")
    client.close()


CAP = 8


@pytest.mark.parametrize(
    "answer",
    [
        # Declared larger than the cap and never sent: refused without waiting for it.
        b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n9\r\n",
        b"HTTP/1.0 200 OK\r\n\r\n" + b"x" * (CAP + 1),
    ],
    ids=["content-length", "chunked", "until-close"],
)
def test_a_body_larger_than_the_caller_expects_is_not_held(
    raw: list[RawServer], answer: bytes
) -> None:
    raw.append(server := RawServer([[answer], [_reply(b"12345678")]]))
    client = _client(server, timeout=30.0)
    started = time.monotonic()
    with pytest.raises(BadReply, match=f"larger than {CAP} bytes"):
        client.request("GET", "/v1/programs/x", cap=CAP)
    assert time.monotonic() - started < 10
    # The connection it came on is dropped; the next request is answered on a new one.
    assert client.request("GET", "/v1/programs/x", cap=CAP) == (200, b"12345678")
    assert [number for number, _ in server.requests] == [0, 1]
    client.close()


# --- the connection kept alive, closed, and found closed ------------------------------


def test_requests_share_a_connection_until_the_market_says_close(raw: list[RawServer]) -> None:
    first: list[Step] = [_reply(b"{}"), _reply(b'{"n": 2}', "Connection: close")]
    raw.append(server := RawServer([first, [_reply(b'{"n": 3}')]]))
    client = _client(server)
    assert client.request_json("POST", "/v1/a", {}) == {}
    assert client.request_json("POST", "/v1/b", {}) == {"n": 2}
    assert client.request_json("POST", "/v1/c", {}) == {"n": 3}
    assert server.requests == [
        (0, "POST /v1/a HTTP/1.1"),
        (0, "POST /v1/b HTTP/1.1"),
        (1, "POST /v1/c HTTP/1.1"),
    ]
    client.close()


def test_a_connection_handed_over_carries_the_next_clients_requests(
    raw: list[RawServer],
) -> None:
    """The client that enrolled hands its connection to the seller's client (another
    market's client, and one after it, open their own)."""
    raw.append(server := RawServer([[_reply(b"{}"), _reply(b'{"n": 2}')], [_reply(b"{}")]]))
    raw.append(other := RawServer([[_reply(b'{"other": 1}')]]))
    enrolling = _client(server)
    assert enrolling.request_json("POST", "/v1/hosts", {}) == {}
    enrolling.hand_over()
    assert _client(other).request_json("POST", "/v1/x", {}) == {"other": 1}
    seller = _client(server)
    assert seller.request_json("POST", "/v1/leases", {}) == {"n": 2}
    assert _client(server).request_json("POST", "/v1/c", {}) == {}
    assert server.requests == [
        (0, "POST /v1/hosts HTTP/1.1"),
        (0, "POST /v1/leases HTTP/1.1"),
        (1, "POST /v1/c HTTP/1.1"),
    ]
    seller.close()


def test_a_connection_idle_too_long_is_closed_not_handed_over(
    raw: list[RawServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first connection would carry a second request: the seller's goes on another.
    first: list[Step] = [_reply(b"{}"), _reply(b'{"n": 1}')]
    raw.append(server := RawServer([first, [_reply(b'{"n": 2}')]]))
    enrolling = _client(server)
    assert enrolling.request_json("POST", "/v1/hosts", {}) == {}
    monkeypatch.setattr("cpushare.seller.client.REUSE_SECONDS", -1.0)  # any idle is too long
    enrolling.hand_over()
    seller = _client(server)
    assert seller.request_json("POST", "/v1/leases", {}) == {"n": 2}
    assert [number for number, _ in server.requests] == [0, 1]
    seller.close()


def test_a_connection_the_market_closed_while_idle_is_not_used(raw: list[RawServer]) -> None:
    raw.append(server := RawServer([[_reply(b"{}")], [_reply(b'{"n": 2}')]]))
    client = _client(server)
    assert client.request_json("POST", "/v1/a", {}) == {}
    assert server.idle_closed.wait(10)
    time.sleep(0.1)  # its end reaches the client
    # Seen closed before anything is sent: even a request not safe to repeat goes through.
    assert client.request_json("POST", "/v1/b", {}) == {"n": 2}
    assert [number for number, _ in server.requests] == [0, 1]
    client.close()


@pytest.mark.parametrize(
    ("method", "repeated"), [("GET", True), ("POST", False)], ids=["get", "post"]
)
def test_a_kept_alive_connection_closed_without_a_reply_repeats_only_a_safe_request(
    raw: list[RawServer], method: str, repeated: bool
) -> None:
    # The second request is read, then the connection closed without a reply.
    raw.append(server := RawServer([[_reply(b"{}"), None], [_reply(b'{"n": 2}')]]))
    client = _client(server)
    assert client.request_json(method, "/v1/a", None) == {}
    if repeated:
        assert client.request_json(method, "/v1/b", None) == {"n": 2}
        assert [number for number, _ in server.requests] == [0, 0, 1]
    else:
        with pytest.raises(Unreachable, match=f"{method} /v1/b: .*closed"):
            client.request_json(method, "/v1/b", None)
        assert [number for number, _ in server.requests] == [0, 0]
    client.close()


def test_a_get_cut_by_its_deadline_is_not_repeated(raw: list[RawServer]) -> None:
    # The cut closes the connection as the market would: no reply, and no second try,
    # which no deadline would bound.
    raw.append(server := RawServer([[_reply(b"{}"), 3.0], [_reply(b"{}")]]))
    client = MarketClient(SellOrder(server.url, "o-http", "s" * 24, "lab"), 5.0, exchange=1.0)
    assert client.request_json("GET", "/v1/a") == {}
    with pytest.raises(Unreachable, match="GET /v1/b: no whole reply within 1 s"):
        client.request_json("GET", "/v1/b")
    assert [number for number, _ in server.requests] == [0, 0]
    client.close()


def test_a_fresh_connection_closed_without_a_reply_is_not_repeated(
    raw: list[RawServer],
) -> None:
    raw.append(server := RawServer([[None], [_reply(b"{}")]]))
    client = _client(server)
    with pytest.raises(Unreachable, match="closed without a reply"):
        client.request_json("GET", "/v1/a", None)
    assert len(server.requests) == 1
    client.close()


def test_the_seller_imports_neither_http_client_nor_email() -> None:
    # The whole seller as the live system starts it: its fleet, each seller's agent.
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "import cpushare.seller.fleet, cpushare.seller.agent\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('http', 'email')))"
    )
    root = str(Path(cpushare.__file__).resolve().parents[1])
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", probe, root], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "[]\n"


@pytest.mark.parametrize("path", ["/v1/a b", "/v1/\r\nX-Injected: 1", "/v1/é"])
def test_a_request_http_cannot_carry_is_not_sent(raw: list[RawServer], path: str) -> None:
    raw.append(server := RawServer([[_reply(b"{}")]]))
    client = _client(server)
    with pytest.raises(Unreachable, match="not a request target"):
        client.request_json("GET", path)
    assert client.request_json("GET", "/v1/a") == {}
    assert server.requests == [(0, "GET /v1/a HTTP/1.1")]
    client.close()
