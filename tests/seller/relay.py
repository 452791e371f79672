"""A TCP relay between sellers and a market, for the tests: it counts the connections a
seller opens, notes the requests it sends, can cut the market off and back on, and can
hold what sellers send for a while (a market further away), or leave out a header line
of theirs (a market that does not know what it asks for)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time


class Relay:
    """Listens on loopback and forwards each connection to `target` (host, port)."""

    def __init__(self, target: tuple[str, int], delay: float = 0.0, strip: bytes = b"") -> None:
        self.target = target
        self.delay = delay  # seconds each chunk a client sends is held
        self.strip = strip  # a header line (its CRLF included) taken out of what clients send
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.connections = 0
        self.sent = bytearray()  # everything the clients sent, in arrival order
        self._down = False
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def requests(self, line: bytes) -> int:
        """How many requests starting with `line` (b"POST /v1/results") were sent."""
        with self._lock:
            return bytes(self.sent).count(line)

    def cut(self, down: bool) -> None:
        """Cut the market off (every connection dropped, new ones closed at once) or back."""
        with self._lock:
            self._down = down
            if down:
                for sock in self._open:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.cut(True)
        # A shutdown wakes the accepting thread (a close alone would not).
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self._thread.join()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                if self._down:
                    client.close()
                    continue
                self.connections += 1
                server = socket.create_connection(self.target)
                self._open += [client, server]
            threading.Thread(target=self._pipe, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, False), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, note: bool) -> None:
        try:
            while data := source.recv(65536):
                if note:
                    if self.strip:  # a request's head comes whole in its first chunk
                        data = data.replace(self.strip, b"")
                    with self._lock:
                        self.sent += data
                    if self.delay:
                        time.sleep(self.delay)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
