"""Reading requests and writing JSON replies (market.api, market.responses), without a
server: typed fields, credentials, capped bodies, the reply's bytes and headers."""

from __future__ import annotations

import base64
import math
from collections.abc import Callable
from typing import Any

import pytest
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from market.api import Credentials, credentials, field, read_body
from market.errors import MarketError, TooLarge, Unauthorized
from market.responses import json_response


def _request(headers: dict[str, str], messages: list[dict[str, Any]] | None = None) -> Request:
    queue = list(messages or [])

    async def receive() -> dict[str, Any]:
        return queue.pop(0)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }
    return Request(scope, receive)


def test_fields_are_checked_by_their_exact_type() -> None:
    doc = {"i": 3, "f": 2.5, "b": True, "s": "x", "l": [1], "nan": math.nan, "inf": -math.inf}
    assert field(doc, "i", int) == 3
    assert field(doc, "f", float) == 2.5
    # An integer is taken where a number is wanted, as a float.
    assert field(doc, "i", float) == 3.0 and isinstance(field(doc, "i", float), float)
    assert field(doc, "b", bool) is True
    assert field(doc, "l", list) == [1]
    assert field(doc, "missing", int, 7) == 7
    with pytest.raises(MarketError, match="'b' must be an integer"):
        field(doc, "b", int)  # a bool is not an integer
    with pytest.raises(MarketError, match="'b' must be a number"):
        field(doc, "b", float)
    with pytest.raises(MarketError, match="'i' must be bool"):
        field(doc, "i", bool)
    with pytest.raises(MarketError, match="'s' must be an integer"):
        field(doc, "s", int)
    for name in ("nan", "inf"):
        with pytest.raises(MarketError, match="finite"):
            field(doc, name, float)
    with pytest.raises(MarketError, match="'missing' is missing"):
        field(doc, "missing", int)


def _basic(user: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()


def test_credentials_of_each_kind_and_refusals_each_time() -> None:
    host = _request({"Authorization": _basic("host-ab", "s:1")})
    assert credentials(host) == Credentials(host_id="host-ab", secret="s:1")
    # The same header again (remembered) gives the same credentials.
    assert credentials(host) == Credentials(host_id="host-ab", secret="s:1")
    order = _request({"Authorization": _basic("O-1", "t")})
    assert credentials(order) == Credentials(order_id="O-1", secret="t")
    assert credentials(_request({"Authorization": "bearer  k "})) == Credentials(api_key="k")
    long_key = "k" * 2000  # parsed, not remembered
    assert credentials(_request({"Authorization": f"Bearer {long_key}"})).api_key == long_key
    for header in ("Basic !!!", "Basic " + base64.b64encode(b"no-colon").decode(), "Digest x"):
        for _ in range(2):  # a refusal is not remembered as credentials
            with pytest.raises(Unauthorized):
                credentials(_request({"Authorization": header}))
    with pytest.raises(Unauthorized, match="missing credentials"):
        credentials(_request({}))


def test_bodies_are_joined_and_capped_and_a_hang_up_is_seen(
    run_coroutine: Callable[[Any], Any],
) -> None:
    parts = [
        {"type": "http.request", "body": b"ab", "more_body": True},
        {"type": "http.request", "body": b"", "more_body": True},
        {"type": "http.request", "body": b"cd", "more_body": False},
    ]
    assert run_coroutine(read_body(_request({}, parts), 4)) == b"abcd"
    one = [{"type": "http.request", "body": b"abc"}]
    assert run_coroutine(read_body(_request({}, one), 4)) == b"abc"
    empty = [{"type": "http.request"}]
    assert run_coroutine(read_body(_request({}, empty), 4)) == b""
    with pytest.raises(TooLarge):
        run_coroutine(read_body(_request({}, parts), 3))
    with pytest.raises(TooLarge):  # refused on its declared length, before reading
        run_coroutine(read_body(_request({"Content-Length": "5"}, []), 4))
    gone = [{"type": "http.request", "body": b"a", "more_body": True}, {"type": "http.disconnect"}]
    with pytest.raises(ClientDisconnect):
        run_coroutine(read_body(_request({}, gone), 4))


def test_json_replies_are_what_starlette_would_send() -> None:
    for doc, status in (({"a": [1, 2.5, None, "é"]}, 200), ({"error": "x"}, 401), ([], 201)):
        reply = json_response(doc, status)
        plain = Response(reply.body, status, media_type="application/json")
        assert (reply.status_code, reply.body) == (status, plain.body)
        assert reply.raw_headers == plain.raw_headers
    assert json_response({"a": "é", "b": 1}).body == b'{"a":"\\u00e9","b":1}'
    reply = json_response({"error": "slow down"}, 429)
    reply.headers["Retry-After"] = "3"
    assert (b"retry-after", b"3") in reply.raw_headers
    assert json_response({}).raw_headers is not json_response({}).raw_headers
