"""The market's JSON replies, and its refusals turned into them."""

from __future__ import annotations

import json
import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from cpushare import protocol
from market.errors import MarketError, TooManyRequests, Unavailable

log = logging.getLogger("market")


_JSON = (b"content-type", b"application/json")
_encode = json.JSONEncoder(separators=(",", ":")).encode


def encode(doc: object) -> bytes:
    """`doc` as the market's replies write JSON: compact, ASCII."""
    return _encode(doc).encode()


class JSONReply(Response):
    """A JSON reply whose headers are written at once: content-length and content-type,
    as Starlette's Response would write them for a body that is never empty."""

    media_type = "application/json"

    def __init__(self, body: bytes, status: int) -> None:
        self.status_code = status
        self.background = None
        self.body = body
        self.raw_headers = [(b"content-length", b"%d" % len(body)), _JSON]


_BLOBS = (b"content-type", protocol.BLOBS.encode())


class BlobsReply(Response):
    """A protocol.BLOBS reply: a JSON document on one line, then the bytes it names."""

    media_type = protocol.BLOBS

    def __init__(self, head: bytes, blobs: list[bytes], status: int = 200) -> None:
        self.status_code = status
        self.background = None
        self.body = b"".join([head, b"\n", *blobs])
        self.raw_headers = [(b"content-length", b"%d" % len(self.body)), _BLOBS]


def accepts_blobs(request: Request) -> bool:
    """Whether the client asks for protocol.BLOBS replies (a seller's Accept header)."""
    return protocol.BLOBS in request.headers.get("accept", "")


def json_response(doc: object, status: int = 200) -> Response:
    return JSONReply(encode(doc), status)


async def market_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, MarketError)
    doc = {"error": str(exc)} if exc.code is None else {"error": str(exc), "code": exc.code}
    response = json_response(doc, exc.status)
    if isinstance(exc, TooManyRequests | Unavailable):
        response.headers["Retry-After"] = str(max(1, round(exc.retry_after)))
    if exc.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer, Basic realm="cpushare"'
    return response


async def http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return json_response({"error": str(exc.detail)}, exc.status_code)


async def store_full(_request: Request, exc: Exception) -> Response:
    log.error("%s", exc)
    return json_response({"error": f"{exc}; nothing of this request was kept"}, 507)


async def internal_error(_request: Request, exc: Exception) -> Response:
    log.exception("internal error", exc_info=exc)
    return json_response({"error": "internal error: the market logged it"}, 500)
