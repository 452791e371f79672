"""The seller's HTTP client: TLS pinned by the order, Basic auth, capped and checked replies.

Every reply is treated as hostile until checked: its size is capped before it is read,
JSON must parse to the expected shape, and failures become one of cpushare.replies' exceptions,
which the agent knows how to survive (or, for Revoked, how to stop).

The credentials are the order's for enrollment and the host's for everything after it
(cpushare.seller.host). `CPUSHARE_SOURCE_ADDRESS` binds the connection's source address:
tests on loopback use 127.0.0.2, 127.0.0.3... to stand for distinct machines. The HTTP
itself, over one kept-alive connection, is cpushare.seller.http11's.
"""

from __future__ import annotations

import base64
import errno
import json
import os
import socket
import ssl
import threading
import time

from cpushare.limits import MAX_EXCHANGE_SECONDS, MAX_RETRY_AFTER
from cpushare.order import SellOrder, endpoint
from cpushare.protocol import BLOBS, media_type, split_blobs
from cpushare.replies import BadReply, Busy, NoRoute, Refused, Revoked, Unreachable
from cpushare.seller.ciphers import suit
from cpushare.seller.deadline import Deadline
from cpushare.seller.http11 import (
    Connection,
    Dropped,
    Reply,
    TooLarge,
    WireError,
    pinned_context,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any

USER_AGENT = "cpushare-seller/1"
# Replies bigger than this are refused unread: a lease carries at most a 16 MiB input.
MAX_REPLY_BYTES = 24 << 20
SOURCE_ADDRESS_ENV = "CPUSHARE_SOURCE_ADDRESS"
# The market closes a kept-alive connection idle for 8 s: one idle longer than this is
# opened afresh, not reused and found closed halfway through a request.
REUSE_SECONDS = 4.0
# Requests sent again, once, on a fresh connection when the kept-alive one turns out to
# have been closed before it replied: those that change nothing on the market.
REPEATABLE = frozenset({"GET"})
# Kept-alive connections a client of this process handed over (`hand_over`) to the next
# client of the same market, by market (URL, pin, CA), with when each was last used. The
# market checks the credentials of each request, not the connection's: the seller that
# enrolled its machine leases as that host over the connection it enrolled on, a TCP and
# TLS handshake fewer (two round trips, and the key exchange under emulation) on its way
# to its first job.
_spares: dict[tuple[str, str | None, str | None], tuple[Connection, float]] = {}
_spares_lock = threading.Lock()
# A connection's failures that say this machine has no way to the market yet (NoRoute),
# found out without a packet sent to it: no route (ENETUNREACH), no address to send
# from (EADDRNOTAVAIL: none yet, or not yet the CPUSHARE_SOURCE_ADDRESS asked for).
# EHOSTUNREACH is not one: a router said no, or the neighbour never answered, after
# packets went out. Nor is a refused connection or a timeout: the market's or the
# network's own answers.
NO_ROUTE_ERRNOS = frozenset({errno.ENETUNREACH, errno.EADDRNOTAVAIL})


def _connection(order: SellOrder, timeout: float) -> Connection:
    scheme, host, port, _ = endpoint(order.market_url)
    source = os.environ.get(SOURCE_ADDRESS_ENV)
    bind = (source, 0) if source else None
    if scheme == "http":
        return Connection(host, port, timeout=timeout, source_address=bind)
    if order.cert_sha256:
        context, pin = pinned_context(), order.cert_sha256
    else:
        context, pin = ssl.create_default_context(cadata=order.ca_pem), None
    return Connection(
        host, port, timeout=timeout, source_address=bind, context=suit(context), pin=pin
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
        self.prefix = endpoint(order.market_url)[3].rstrip("/")
        user, password = credentials or (order.order_id, order.secret)
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        self._headers = {"Authorization": f"Basic {token}", "User-Agent": USER_AGENT}
        self._conn: Connection | None = None  # made at the first request, then reopened
        self._last_used = 0.0
        self._lock = threading.RLock()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()

    def hand_over(self) -> None:
        """Leave this client's connection, open and recently used, to the next client of
        this process for the same market (it replaces one left before); else close it.
        This client opens a new one should it make another request."""
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is None:
                return
            if not _reusable(conn, self._last_used):
                conn.close()
                return
            market = _market(self.order)
            with _spares_lock:
                left = _spares.pop(market, None)
                _spares[market] = (conn, self._last_used)
            if left is not None:
                left[0].close()

    def _open(self) -> Connection:
        """The connection handed over for this market if it is still fresh, else a new
        one (connected at its first request)."""
        with _spares_lock:
            spare = _spares.pop(_market(self.order), None)
        if spare is not None:
            conn, last_used = spare
            if _reusable(conn, last_used):
                self._last_used = last_used
                return conn
            conn.close()
        return _connection(self.order, self.timeout)

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
            reply = self._request(method, path, body, timeout, cap, exchange or self.exchange)
            return reply.status, reply.body

    def _request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | list[bytes] | None,
        timeout: float | None,
        cap: int,
        exchange: float,
        media: str = "application/json",
        accept: str | None = None,
    ) -> Reply:
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        headers = dict(self._headers)
        if data is not None:
            headers["Content-Type"] = media
        if accept is not None:
            headers["Accept"] = accept
        if time.monotonic() - self._last_used > REUSE_SECONDS:
            self.close()
        deadline: Deadline | None = None
        try:
            if self._conn is None:
                self._conn = self._open()
            conn = self._conn
            if conn.dropped():
                conn.close()
            conn.settimeout(timeout or self.timeout)
            with Deadline(conn, exchange) as deadline:
                reused = conn.sock is not None
                try:
                    reply = conn.request(method, self.prefix + path, headers, data, cap)
                except Dropped:
                    # Closed by the market while idle, found closed only now (not cut by
                    # the deadline: a request sent again would be cut no more).
                    if not reused or method not in REPEATABLE or deadline.expired:
                        raise
                    conn.close()
                    reply = conn.request(method, self.prefix + path, headers, data, cap)
            self._last_used = time.monotonic()
            if deadline.expired:  # the cut may end a read early without an error
                raise TimeoutError
        except TooLarge:
            self.close()
            raise BadReply(f"{method} {path}: the reply is larger than {cap} bytes") from None
        except (OSError, WireError) as exc:
            self.close()
            late = deadline is not None and deadline.expired
            reason = f"no whole reply within {exchange:g} s" if late else exc
            kind = NoRoute if not late and _no_route(exc) else Unreachable
            raise kind(f"{method} {path}: {reason or type(exc).__name__}") from None
        if reply.will_close:
            self.close()
        payload = reply.body
        if reply.status == 429:
            wait = _retry_after(reply.headers.get("retry-after"))
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
        return reply

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
        return _json_object(method, path, payload)

    def request_blobs(
        self,
        method: str,
        path: str,
        body: list[bytes],
        *,
        blobs: bool,
        timeout: float | None = None,
    ) -> tuple[dict[str, Any] | None, memoryview | None]:
        """Like `request_json`, for the documents that may carry raw bytes after them
        (cpushare.protocol.BLOBS): `body` sent as one (`blobs`) or as JSON, and the
        reply asked for as one. The reply's JSON object (None for 204 No Content) and,
        if it came as one, the bytes after its document."""
        with self._lock:
            reply = self._request(
                method,
                path,
                body,
                timeout,
                MAX_REPLY_BYTES,
                self.exchange,
                BLOBS if blobs else "application/json",
                f"{BLOBS}, application/json",
            )
        if reply.status == 204:
            return None, None
        if media_type(reply.headers.get("content-type", "")) != BLOBS:
            return _json_object(method, path, reply.body), None
        try:
            head, tail = split_blobs(reply.body)
        except ValueError as exc:
            raise BadReply(f"{method} {path}: {exc}") from None
        return _json_object(method, path, head), tail


def _no_route(exc: Exception) -> bool:
    """Whether `exc` says this machine has no way to the market yet: NO_ROUTE_ERRNOS, or
    the market's name unresolved for want of a name server (EAI_AGAIN: before DHCP there
    is no resolv.conf, or no route to the one it names; a name server that does not
    answer says the same, later)."""
    if isinstance(exc, socket.gaierror):
        return exc.errno == socket.EAI_AGAIN
    return isinstance(exc, OSError) and exc.errno in NO_ROUTE_ERRNOS


def _reusable(conn: Connection, last_used: float) -> bool:
    """Whether a kept-alive connection last used at `last_used` may carry a request."""
    return conn.sock is not None and time.monotonic() - last_used <= REUSE_SECONDS


def _market(order: SellOrder) -> tuple[str, str | None, str | None]:
    """What a connection to `order`'s market depends on: its URL and how it is trusted."""
    return order.market_url, order.cert_sha256, order.ca_pem


def _json_object(method: str, path: str, payload: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(payload)
    except (ValueError, RecursionError):
        raise BadReply(f"{method} {path}: the reply is not JSON") from None
    if not isinstance(doc, dict):
        raise BadReply(f"{method} {path}: the reply is not a JSON object")
    return doc


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
