"""A whole exchange with the market bounded in time, not only each read of it.

A socket's timeout bounds each read: a market that drips its reply a byte at a time
never trips it, and could hold a seller for as long as it likes. A Deadline cuts the
connection once its time is up; the blocked read then ends and the client reports it.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading


class Deadline:
    """`with Deadline(conn, seconds):` cuts `conn` when `seconds` have passed inside;
    `expired` then says so. Once the request is sent, `sock` must be set to the
    connection's socket: a reply that ends the connection (HTTP/1.0, `Connection: close`)
    is read from a socket that the connection no longer holds."""

    def __init__(self, conn: http.client.HTTPConnection, seconds: float) -> None:
        self.conn = conn
        self.sock: socket.socket | None = None
        self.expired = False
        self._timer = threading.Timer(seconds, self._cut)
        self._timer.daemon = True  # never what keeps a stopping seller alive

    def _cut(self) -> None:
        self.expired = True
        for sock in (self.conn.sock, self.sock):
            if sock is not None:
                # The plain socket's shutdown, also under TLS (the TLS one would talk first).
                with contextlib.suppress(OSError):  # closed meanwhile
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def __enter__(self) -> Deadline:
        self._timer.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._timer.cancel()
        self._timer.join()
