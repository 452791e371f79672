"""The seller's HTTP/1.1 client: one request at a time over one kept-alive
connection, and every reply read strictly and within limits before anything trusts it.

Not http.client: its header parsing is the email package's, whose import alone cost the
guest about 0.44 s of its way to the first result under emulation, and which weighs on
every seller's memory and on every reply's CPU. The seller talks to one market (or a
TLS-terminating proxy in front of it) and needs little of HTTP: a status, a few
headers, a body framed by Content-Length, by chunks or by the connection's end.

A reply that breaks HTTP as accepted here (a malformed status line or header, a head or
a line too long, too many headers, a body short of its length, an unknown transfer
coding) raises WireError, one whose body would exceed what the caller expects raises
TooLarge before it is read: either way the connection is of no further use. Socket
errors (timeouts, resets, TLS failures, PinMismatch) pass through as OSError.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import select
import socket
import ssl
from collections.abc import Iterator

from cpushare.record import record

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import BinaryIO

# A line of a head (or a chunk's size line), a whole head (interim replies and trailers
# included), and its number of header fields: uvicorn's replies use a few hundred bytes.
MAX_LINE = 8 << 10
MAX_HEAD = 64 << 10
MAX_FIELDS = 100
# Informational (1xx) replies skipped before the final one: none is expected.
MAX_INTERIM = 4
# A body in pieces up to this size is joined with its head and sent in one write; a
# larger one (big outputs) is sent piece by piece, never copied again whole.
JOIN_BYTES = 256 << 10
# Replies that never have a body, whatever their headers say (RFC 9112, 6.3; the seller
# sends no HEAD).
_NO_BODY = (204, 304)
# Linux's TCP_CORK (None elsewhere): see _corked.
_TCP_CORK: int | None = getattr(socket, "TCP_CORK", None)

_STATUS = re.compile(r"HTTP/1\.([01]) ([1-5][0-9][0-9])(?: [^\x00-\x08\x0a-\x1f\x7f]*)?")
_FIELD = re.compile(r"([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*([^\x00-\x08\x0a-\x1f\x7f]*?)[ \t]*")
_TARGET = re.compile(r"/[!-~]*")
_HEX = re.compile(r"[0-9A-Fa-f]{1,15}")
_DIGITS = re.compile(r"[0-9]{1,18}")


class WireError(Exception):
    """The reply is not HTTP/1.1 as this client accepts it, or the connection broke."""


class Dropped(WireError):
    """The server closed or reset the connection before any byte of a reply: on a
    kept-alive connection, it had closed it meanwhile; a request safe to repeat may be
    sent again on a fresh one."""


class TooLarge(WireError):
    """The reply's body is larger than the caller's cap (left unread)."""


class PinMismatch(ConnectionError):
    """The server's certificate is not the one the order pins."""


@record(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]  # names in lower case; repeated fields joined by ", "
    body: bytes
    will_close: bool  # the server ends the connection after this reply


def pinned_context() -> ssl.SSLContext:
    """A TLS context for a pinned certificate: the pin replaces chain and name checks."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class Connection:
    """One HTTP/1.1 connection, opened by the first request and again after `close`:
    plain, TLS verified by `context`, or TLS trusting exactly the certificate whose DER
    form's sha256 is `pin` (checked before any byte is sent; `context`, if given, a
    `pinned_context`). `sock` is the socket while
    open, for a deadline to cut (cpushare.seller.deadline)."""

    def __init__(
        self,
        host: str,
        port: int | None,
        *,
        timeout: float,
        source_address: tuple[str, int] | None = None,
        context: ssl.SSLContext | None = None,
        pin: str | None = None,
    ) -> None:
        if pin is not None and context is None:
            context = pinned_context()
        self.host = host
        self.port = port or (443 if context else 80)
        self.timeout = timeout
        self.source_address = source_address
        self.context = context
        self.pin = pin
        self.sock: socket.socket | None = None
        self._file: BinaryIO | None = None
        name = f"[{host}]" if ":" in host else host
        default = 443 if context else 80
        self._host_field = name if self.port == default else f"{name}:{self.port}"

    def settimeout(self, timeout: float) -> None:
        """Bound each connect, read and write from now on by `timeout` seconds."""
        self.timeout = timeout
        if self.sock is not None:
            self.sock.settimeout(timeout)

    def close(self) -> None:
        file, sock, self._file, self.sock = self._file, self.sock, None, None
        if file is not None:
            file.close()
        if sock is not None:
            sock.close()

    def dropped(self) -> bool:
        """Whether this open, idle connection can no longer carry a request: the server
        closed it, or sent something nobody asked for."""
        if self.sock is None:
            return False
        if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
            return True
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        return bool(poller.poll(0))

    def request(
        self,
        method: str,
        target: str,
        headers: dict[str, str],
        body: bytes | list[bytes] | None,
        cap: int,
    ) -> Reply:
        """Send one request and read its reply, whose body may be at most `cap` bytes.
        Opens the connection first if it is not open."""
        head = self._head(method, target, headers, body)
        if self.sock is None:
            self._connect()
        assert self.sock is not None and self._file is not None
        try:
            self._send(self.sock, head, body)
            first = self._file.readline(MAX_LINE + 1)
        except (ConnectionError, ssl.SSLEOFError, ssl.SSLZeroReturnError) as exc:
            raise Dropped(f"the connection was closed before a reply ({exc})") from None
        if not first:
            raise Dropped("the connection was closed without a reply")
        return _ReplyReader(self._file).read(first, cap)

    def _connect(self) -> None:
        name = _ascii(self.host)
        # getaddrinfo takes the bytes too, which typeshed's create_connection does not say.
        address = (name, self.port)
        sock = socket.create_connection(address, self.timeout, self.source_address)  # type: ignore[arg-type]
        self.sock = sock  # reachable by a deadline's cut during the handshake
        try:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.context is not None:
                sock = self.context.wrap_socket(sock, server_hostname=name)
                self.sock = sock
                if self.pin is not None:
                    der = sock.getpeercert(binary_form=True)
                    if der is None or hashlib.sha256(der).hexdigest() != self.pin:
                        raise PinMismatch(
                            "the market's certificate does not match the order's cert_sha256"
                        )
            self._file = sock.makefile("rb")
        except BaseException:
            sock.close()
            self.sock = None
            raise

    def _head(
        self, method: str, target: str, headers: dict[str, str], body: bytes | list[bytes] | None
    ) -> bytes:
        if not _TARGET.fullmatch(target):
            raise WireError(f"{target!r} is not a request target this client sends")
        fields = {"Host": self._host_field, "Accept-Encoding": "identity", **headers}
        if body is not None:
            size = len(body) if isinstance(body, bytes) else sum(map(len, body))
            fields["Content-Length"] = str(size)
        lines = [f"{method} {target} HTTP/1.1", *(f"{k}: {v}" for k, v in fields.items())]
        if any(not line.isprintable() or not line.isascii() for line in lines):
            raise WireError("a request header holds a character HTTP does not allow")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")

    @staticmethod
    def _send(sock: socket.socket, head: bytes, body: bytes | list[bytes] | None) -> None:
        if body is None:
            sock.sendall(head)
            return
        pieces = [body] if isinstance(body, bytes) else body
        if sum(map(len, pieces)) <= JOIN_BYTES:
            sock.sendall(b"".join([head, *pieces]))
            return
        with _corked(sock):
            sock.sendall(head)
            for piece in pieces:
                sock.sendall(piece)


class _ReplyReader:
    """One reply's head and body, read within the limits above."""

    def __init__(self, file: BinaryIO) -> None:
        self.file = file
        self.head_left = MAX_HEAD

    def read(self, first: bytes, cap: int) -> Reply:
        for _ in range(MAX_INTERIM + 1):
            version, status = self._status(self._line(first))
            headers = self._fields()
            if status >= 200:
                break
            if status == 101:
                raise WireError("the server switched protocols")
            first = self.file.readline(MAX_LINE + 1)
        else:
            raise WireError(f"more than {MAX_INTERIM} interim (1xx) replies")
        if headers.get("content-encoding", "identity").lower() != "identity":
            raise WireError(f"the reply is encoded ({headers['content-encoding'][:40]})")
        closes = set(_tokens(headers.get("connection", "")))
        will_close = "close" in closes or (version == 0 and "keep-alive" not in closes)
        if status in _NO_BODY:
            return Reply(status, headers, b"", will_close)
        if "transfer-encoding" in headers:
            if version == 0 or "content-length" in headers:
                raise WireError("the reply has a Transfer-Encoding it may not have")
            if _tokens(headers["transfer-encoding"]) != ["chunked"]:
                raise WireError(f"unknown transfer coding {headers['transfer-encoding'][:40]!r}")
            return Reply(status, headers, self._chunked(cap), will_close)
        if "content-length" in headers:
            return Reply(status, headers, self._exactly(_length(headers), cap), will_close)
        # Neither: the body ends with the connection.
        body = self.file.read(cap + 1)
        if len(body) > cap:
            raise TooLarge(f"the reply is larger than {cap} bytes")
        return Reply(status, headers, body, True)

    def _line(self, line: bytes | None = None) -> str:
        """A line of the head (`line` if read already), its end of line removed."""
        if line is None:
            line = self.file.readline(MAX_LINE + 1)
        self.head_left -= len(line)
        if len(line) > MAX_LINE or self.head_left < 0:
            raise WireError(f"the reply's head is longer than this client accepts ({MAX_HEAD})")
        if not line.endswith(b"\n"):
            raise WireError("the connection ended in the reply's head")
        return line.decode("latin-1").removesuffix("\n").removesuffix("\r")

    @staticmethod
    def _status(line: str) -> tuple[int, int]:
        match = _STATUS.fullmatch(line)
        if match is None:
            raise WireError(f"not an HTTP/1.x status line: {line[:60]!r}")
        return int(match[1]), int(match[2])

    def _fields(self) -> dict[str, str]:
        """Header fields (or trailers) up to the empty line."""
        fields: dict[str, str] = {}
        for _ in range(MAX_FIELDS + 1):
            line = self._line()
            if not line:
                return fields
            match = _FIELD.fullmatch(line)
            if match is None:
                raise WireError(f"a malformed header line: {line[:60]!r}")
            name, value = match[1].lower(), match[2]
            fields[name] = f"{fields[name]}, {value}" if name in fields else value
        raise WireError(f"the reply has more than {MAX_FIELDS} header fields")

    def _exactly(self, size: int, cap: int) -> bytes:
        if size > cap:
            raise TooLarge(f"the reply is larger than {cap} bytes")
        data = self.file.read(size)
        if len(data) < size:
            raise WireError(f"the reply's body ended {size - len(data)} bytes short")
        return data

    def _chunked(self, cap: int) -> bytes:
        # One buffer, not a list of pieces: a million chunks of a byte each would cost
        # tens of bytes each in a list. At its end, it is copied once.
        body = bytearray()
        while True:
            line = self.file.readline(MAX_LINE + 1)
            if not line.endswith(b"\n") or len(line) > MAX_LINE:
                raise WireError("the connection ended in a chunk's size, or it is too long")
            size_text = line.split(b";", 1)[0].strip(b" \t\r\n").decode("latin-1")
            if not _HEX.fullmatch(size_text):
                raise WireError(f"a chunk's size is not hexadecimal: {size_text[:20]!r}")
            size = int(size_text, 16)
            if size == 0:
                self._fields()  # trailers, ignored
                return bytes(body)
            body += self._exactly(size, cap - len(body))
            if self.file.readline(3) not in (b"\r\n", b"\n"):
                raise WireError("a chunk does not end where its size says")


def _ascii(host: str) -> str | bytes:
    """`host` as the resolver and ssl take it: bytes when ASCII, as they are, where a str
    goes through the idna codec (encodings.idna and stringprep, about 0.1 MiB
    in the live system for the ASCII names markets have); a str otherwise."""
    return host.encode("ascii") if host.isascii() else host


def _tokens(value: str) -> list[str]:
    return [token.strip().lower() for token in value.split(",") if token.strip()]


def _length(headers: dict[str, str]) -> int:
    """Content-Length, the same value however often it is repeated."""
    values = {value.strip() for value in headers["content-length"].split(",")}
    if len(values) != 1 or not _DIGITS.fullmatch(value := values.pop()):
        raise WireError(f"a bad Content-Length: {headers['content-length'][:40]!r}")
    return int(value)


@contextlib.contextmanager
def _corked(sock: socket.socket) -> Iterator[None]:
    """A request in pieces leaves in as few segments as its size allows: each piece is a
    TLS record of its own, and a small segment behind another waits, at a hop that
    delays it (Nagle's algorithm against a delayed acknowledgement), for up to 40 ms.
    Corked, the kernel sends full segments and the rest at the end."""
    if _TCP_CORK is None:
        yield
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, _TCP_CORK, 1)
    except OSError:  # not TCP
        yield
        return
    try:
        yield
    finally:
        with contextlib.suppress(OSError):  # cut meanwhile by a deadline
            sock.setsockopt(socket.IPPROTO_TCP, _TCP_CORK, 0)
