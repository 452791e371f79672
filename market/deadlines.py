"""Deadlines on every connection, so that held sockets cannot take the market down.

uvicorn arms no timer before a connection's first request, nor while a request's head or
body trickles in: a client that connects and sends nothing (or a byte now and then) would
hold its socket for good, and enough of them exhaust the process's file descriptors. Here:

- a TLS handshake must be done within HANDSHAKE_SECONDS of the accept (`MarketLoop`);
- a request's head (request line and headers) must be complete within HEAD_SECONDS of the
  connection's start (its first request) or of its first byte (later requests on a
  kept-alive connection): idle or half-sent, a connection is gone within 10 s, TLS included;
- a request's body must keep arriving at BODY_BYTES per BODY_WINDOW seconds or more
  (a minimum rate, not a total deadline: an honest seller on a slow line may post a large
  result, a trickle of a few bytes a second is dropped), unless the application itself has
  stopped reading;
- a kept-alive connection idle after its response is closed after KEEP_ALIVE_SECONDS.

A connection past its deadline is aborted, not closed gracefully (a TLS close would wait
for the peer's reply); one that sent part of a head is first told 408.
"""

from __future__ import annotations

import asyncio
from asyncio import TimerHandle
from typing import Any

import uvloop
from starlette.requests import Request
from starlette.responses import Response
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HANDSHAKE_SECONDS = 4.0
HEAD_SECONDS = 5.0
SHUTDOWN_SECONDS = 2.0
BODY_WINDOW = 8.0
BODY_BYTES = 16 << 10
KEEP_ALIVE_SECONDS = 8
_LATE = b'{"error":"the request did not arrive in time"}\n'
TIMEOUT_REPLY = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
    b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(_LATE), _LATE)
)


class GuardedHttp(HttpToolsProtocol):
    """uvicorn's httptools protocol with the head, body and idle deadlines above.

    Timers are armed after the parser has seen each chunk, for the phase the request is
    left in: a request that arrives whole (nearly all of them) costs no timer at all."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: TimerHandle | None = None
        self._watching: str | None = None  # "head" or "body": what the timer is for
        self._phase = "head"  # "head", "body" or "done": how far the request has come
        self._begun = False  # a byte of the current request has arrived
        self._completed = False  # a request was completed by the chunk being parsed
        self._body_bytes = 0
        self._window_start = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._watch("head", HEAD_SECONDS)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._completed = False
        super().data_received(data)
        if self.transport.is_closing():
            self._disarm()
        elif self._phase == "body":
            self._watch("body", BODY_WINDOW)
        elif self._phase == "head" or not self._completed:
            # Part of a head, or bytes after a finished request: a head is on its way.
            self._watch("head", HEAD_SECONDS)
        else:
            self._disarm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._phase = "head"
        self._begun = True

    def on_headers_complete(self) -> None:
        self._phase = "body"
        self._body_bytes = 0
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._phase = "done"
        self._begun = False
        self._completed = True
        super().on_message_complete()

    def _watch(self, what: str, seconds: float) -> None:
        """Arm the timer for `what` unless it is already armed for it."""
        if self._watching == what:
            return
        self._disarm()
        self._watching = what
        self._window_start = self._body_bytes
        late = self._head_late if what == "head" else self._body_check
        self._deadline = self.loop.call_later(seconds, late)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = None
        self._watching = None

    def _head_late(self) -> None:
        self._deadline = self._watching = None
        if self.transport.is_closing():
            return
        if self._begun:
            self.transport.write(TIMEOUT_REPLY)
        self.transport.abort()

    def _body_check(self) -> None:
        self._deadline = self._watching = None
        arrived = self._body_bytes - self._window_start
        # A paused read is the application's doing (it is not consuming the body yet),
        # not the client's: it does not count against the client.
        if arrived < BODY_BYTES and not self.flow.read_paused:
            self.transport.abort()
            return
        self._watch("body", BODY_WINDOW)


class MarketLoop(uvloop.Loop):
    """uvloop with the TLS deadlines: uvicorn creates its server without them (a handshake
    could otherwise take 60 s, and a closing TLS connection wait 30 s for its peer)."""

    async def create_server(  # type: ignore[override]
        self, *args: Any, **kwargs: Any
    ) -> asyncio.AbstractServer:
        if kwargs.get("ssl") is not None:
            kwargs.setdefault("ssl_handshake_timeout", HANDSHAKE_SECONDS)
            kwargs.setdefault("ssl_shutdown_timeout", SHUTDOWN_SECONDS)
        return await super().create_server(*args, **kwargs)


async def client_gone(_request: Request, _exc: Exception) -> Response:
    """A request whose connection went away (its client hung up, or a deadline above
    dropped it) while the application read its body: no one to answer, nothing to log."""
    return Response(status_code=400)
