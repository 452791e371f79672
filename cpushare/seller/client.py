"""The seller's HTTP client: TLS pinned by the order, Basic auth, capped and checked replies.

Every reply is treated as hostile until checked: its size is capped before it is read,
JSON must parse to the expected shape, and failures become one of the exceptions below,
which the agent knows how to survive (or, for Revoked, how to stop).

The credentials are the order's for enrollment and the host's for everything after it
(cpushare.seller.host). `CPUSHARE_SOURCE_ADDRESS` binds the connection's source address:
tests on loopback use 127.0.0.2, 127.0.0.3... to stand for distinct machines.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import json
import os
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

from cpushare.limits import MAX_EXCHANGE_SECONDS, MAX_RETRY_AFTER
from cpushare.order import SellOrder
from cpushare.seller.deadline import Deadline

USER_AGENT = "cpushare-seller/1"
# Replies bigger than this are refused unread: a lease carries at most a 16 MiB input.
MAX_REPLY_BYTES = 24 << 20
SOURCE_ADDRESS_ENV = "CPUSHARE_SOURCE_ADDRESS"
# The market closes a kept-alive connection idle for 8 s: one idle longer than this is
# opened afresh, not reused and found closed halfway through a request.
REUSE_SECONDS = 4.0
# A body in pieces up to this size is joined before it is sent; a larger one (big
# outputs) is sent piece by piece, never copied again whole.
JOIN_BYTES = 256 << 10
# Linux's TCP_CORK (None elsewhere): see _corked.
_TCP_CORK: int | None = getattr(socket, "TCP_CORK", None)


class Unreachable(Exception):
    """No usable answer now (network down, TLS or pin failure, 5xx): back off and retry."""


class Busy(Unreachable):
    """429: the market asks to be left alone for `retry_after` seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Refused(Exception):
    """The market said no (4xx); `status` is the HTTP status, the message its reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


class Revoked(Refused):
    """403 with `"code": "revoked"`: this host, its order or its account is revoked or
    disabled; asking again is pointless."""


class BadReply(Exception):
    """The market answered something malformed, oversized or inconsistent."""


class PinMismatch(ConnectionError):
    """The server's certificate is not the one the order pins."""


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS that trusts exactly one certificate, by the sha256 of its DER form."""

    def __init__(
        self,
        host: str,
        port: int | None,
        pin: str,
        timeout: float,
        source_address: tuple[str, int] | None,
    ) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        # The pin replaces chain and name checks; it is checked before any byte is sent.
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        super().__init__(
            host, port, timeout=timeout, source_address=source_address, context=context
        )
        self.pin = pin

    def connect(self) -> None:
        super().connect()
        assert isinstance(self.sock, ssl.SSLSocket)
        der = self.sock.getpeercert(binary_form=True)
        if der is None or hashlib.sha256(der).hexdigest() != self.pin:
            self.sock.close()
            raise PinMismatch("the market's certificate does not match the order's cert_sha256")


def _connection(order: SellOrder, timeout: float) -> http.client.HTTPConnection:
    parts = urllib.parse.urlsplit(order.market_url)
    host = parts.hostname or ""
    source = os.environ.get(SOURCE_ADDRESS_ENV)
    bind = (source, 0) if source else None
    if parts.scheme == "http":
        return http.client.HTTPConnection(host, parts.port, timeout, bind)
    if order.cert_sha256:
        return _PinnedHTTPSConnection(host, parts.port, order.cert_sha256, timeout, bind)
    context = ssl.create_default_context(cadata=order.ca_pem)
    return http.client.HTTPSConnection(
        host, parts.port, timeout=timeout, source_address=bind, context=context
    )


class MarketClient:
    """One seller's kept-alive connection to its order's market. Thread-safe: a lock
    takes the requests of a seller's threads (its jobs' loop, its courier) in turn over
    the one connection."""

    def __init__(
        self,
        order: SellOrder,
        timeout: float = 30.0,
        credentials: tuple[str, str] | None = None,
        exchange: float = MAX_EXCHANGE_SECONDS,
    ) -> None:
        """`credentials` (user, password) are the order's unless given."""
        self.order = order
        self.timeout = timeout
        self.exchange = exchange  # the longest a whole request and reply may take
        self.prefix = urllib.parse.urlsplit(order.market_url).path.rstrip("/")
        user, password = credentials or (order.order_id, order.secret)
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        self._headers = {"Authorization": f"Basic {token}", "User-Agent": USER_AGENT}
        self._conn: http.client.HTTPConnection | None = None
        self._last_used = 0.0
        self._lock = threading.RLock()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | list[bytes] | None = None,
        *,
        timeout: float | None = None,
        cap: int = MAX_REPLY_BYTES,
        exchange: float | None = None,
    ) -> tuple[int, bytes]:
        """(status, body) of a 2xx reply; Unreachable, Refused or BadReply otherwise.
        `timeout` bounds each read, `exchange` the whole request (the client's own if not
        given)."""
        with self._lock:
            return self._request(method, path, body, timeout, cap, exchange or self.exchange)

    def _request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | list[bytes] | None,
        timeout: float | None,
        cap: int,
        exchange: float,
    ) -> tuple[int, bytes]:
        # A body in pieces (JSON already) is sent piece by piece, each a TLS record of its
        # own; joined when small (a batch of small results: one record, not dozens).
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        if isinstance(data, list) and sum(map(len, data)) <= JOIN_BYTES:
            data = b"".join(data)
        headers = dict(self._headers)
        if data is not None:
            headers["Content-Type"] = "application/json"
            headers["Content-Length"] = str(
                len(data) if isinstance(data, bytes) else sum(map(len, data))
            )
        if time.monotonic() - self._last_used > REUSE_SECONDS:
            self.close()
        deadline: Deadline | None = None
        try:
            if self._conn is None:
                self._conn = _connection(self.order, self.timeout)
            self._conn.timeout = timeout or self.timeout
            if self._conn.sock is not None:
                self._conn.sock.settimeout(self._conn.timeout)
            with Deadline(self._conn, exchange) as deadline:
                if self._conn.sock is None:
                    self._conn.connect()
                with _corked(self._conn.sock):
                    self._conn.request(method, self.prefix + path, body=data, headers=headers)
                deadline.sock = self._conn.sock
                reply = self._conn.getresponse()
                payload = reply.read(cap + 1)
            self._last_used = time.monotonic()
            if deadline.expired:  # the cut may end a read early without an error
                raise TimeoutError
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            late = deadline is not None and deadline.expired
            reason = f"no whole reply within {exchange:g} s" if late else exc
            raise Unreachable(f"{method} {path}: {reason or type(exc).__name__}") from None
        if len(payload) > cap or reply.will_close:
            self.close()
        if len(payload) > cap:
            raise BadReply(f"{method} {path}: the reply is larger than {cap} bytes")
        if reply.status == 429:
            wait = _retry_after(reply.getheader("Retry-After"))
            raise Busy(f"{method} {path}: HTTP 429 {_error_text(payload)}", wait)
        if reply.status >= 500:
            raise Unreachable(f"{method} {path}: HTTP {reply.status} {_error_text(payload)}")
        if reply.status >= 400:
            message = f"{method} {path}: {_error_text(payload)}"
            if reply.status == 403 and _error_code(payload) == "revoked":
                raise Revoked(reply.status, message)
            raise Refused(reply.status, message)
        if reply.status >= 300:
            raise BadReply(f"{method} {path}: unexpected HTTP {reply.status}")
        return reply.status, payload

    def request_json(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | list[bytes] | None = None,
        **kwargs: Any,
    ) -> dict[str, Any] | None:
        """The JSON object of a 2xx reply, or None for 204 No Content."""
        status, payload = self.request(method, path, body, **kwargs)
        if status == 204:
            return None
        try:
            doc = json.loads(payload)
        except (ValueError, RecursionError):
            raise BadReply(f"{method} {path}: the reply is not JSON") from None
        if not isinstance(doc, dict):
            raise BadReply(f"{method} {path}: the reply is not a JSON object")
        return doc


@contextlib.contextmanager
def _corked(sock: socket.socket | None) -> Iterator[None]:
    """A request leaves in as few segments as its size allows: http.client sends the
    headers and each piece of a body apart, each a TLS record of its own, and a small
    segment behind another waits, at a hop that delays it (Nagle's algorithm against a
    delayed acknowledgement), for up to 40 ms. Corked, the kernel sends full segments
    and the rest at the end."""
    if sock is None or _TCP_CORK is None:
        yield
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, _TCP_CORK, 1)
    except OSError:  # not TCP (a test's socket pair)
        yield
        return
    try:
        yield
    finally:
        with contextlib.suppress(OSError):  # cut meanwhile by the deadline
            sock.setsockopt(socket.IPPROTO_TCP, _TCP_CORK, 0)


def _retry_after(header: str | None) -> float:
    """Retry-After in seconds (0 when absent or not a number of seconds), capped."""
    try:
        seconds = float(header or 0)
    except ValueError:
        return 0.0
    return min(max(seconds, 0.0), MAX_RETRY_AFTER) if seconds == seconds else 0.0


def _error_code(payload: bytes) -> str | None:
    try:
        code = json.loads(payload)["code"]
    except (ValueError, KeyError, TypeError, RecursionError):
        return None
    return code if isinstance(code, str) else None


def _error_text(payload: bytes) -> str:
    try:
        message = json.loads(payload)["error"]
    except (ValueError, KeyError, TypeError, RecursionError):
        return "(no error message)"
    return str(message)[:300] if isinstance(message, str) else "(no error message)"
