"""This machine's host identity: enrolled once with the market, kept in memory only.

An order is the right to enroll (`POST /v1/hosts` with the order's credentials); the
market answers with a host id and secret, and every later request of every seller on
this machine is made as that host, on seats of its own: SEATS_PER_SELLER per seller, one
for the job it runs and the others for the jobs leased ahead of it and the results not
acknowledged yet (cpushare.seller.courier). The starting process (the fleet, or `livecd
sell`) enrolls once per order and hands each seller its identity on a pipe of
its own (`write_identity` / `read_identity`), never in argv, the environment or a file.
The secret is never written anywhere: a reboot is a new host.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Sequence

from cpushare.console import emit
from cpushare.order import SellOrder
from cpushare.protocol import MAX_SEATS
from cpushare.record import field, record, replace
from cpushare.replies import BadReply, Busy, NoRoute, Refused, Revoked, Unreachable
from cpushare.seller.backoff import Backoff
from cpushare.seller.client import MarketClient

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any, TextIO

# A seller's seats: the running job's, the jobs queued behind it and the results on their
# way to the market. A seat is leased again only once its result is acknowledged, two
# round trips (post, lease) later: tiny jobs need many seats to keep one running all the
# time, long ones use few of them (cpushare.seller.courier sizes the queue).
SEATS_PER_SELLER = 32
HOST_ID = re.compile(r"host-[A-Za-z0-9_-]{1,80}")
# 32 random bytes in URL-safe base64, with or without padding.
HOST_SECRET = re.compile(r"[A-Za-z0-9_-]{43}=?")
ENROLL_TIMEOUT = 30.0
# A seller often starts before DHCP gave the machine its address (QEMU's e1000: a second
# or more later): the market has no route yet (NoRoute). Each attempt is a local route
# lookup, no packet leaves: the enrollment tries again every NO_ROUTE_RETRY seconds,
# without a console line, until NETWORK_WAIT seconds after this process came up (loaded
# this module; its first enrollment follows within a second or two) to cover DHCP at
# QEMU's defaults or on a slow LAN; past that, and so for a later enrollment (a machine
# comes up once), as any unreachable market.
NETWORK_WAIT = 30.0
NO_ROUTE_RETRY = 0.1
_CAME_UP = time.monotonic()
# An identity handed over a pipe is far smaller than this; more is not one.
MAX_IDENTITY_BYTES = 4096


@record(frozen=True)
class Identity:
    """A seller's host credentials and its own seats on that host (`own`, distinct)."""

    host: str
    secret: str = field(repr=False)
    seats: int
    order: str
    own: tuple[int, ...] = (0,)

    def __post_init__(self) -> None:
        if not HOST_ID.fullmatch(self.host):
            raise ValueError("the host id is not host- and letters")
        if not HOST_SECRET.fullmatch(self.secret):
            raise ValueError("the host secret is not 32 bytes of URL-safe base64")
        if not 1 <= self.seats <= MAX_SEATS or not self.own:
            raise ValueError(f"seats {self.own} of {self.seats} are not seats")
        for seat in self.own:
            if isinstance(seat, bool) or not isinstance(seat, int) or not 0 <= seat < self.seats:
                raise ValueError(f"seat {seat!r} of {self.seats} is not a seat")
        if len(set(self.own)) != len(self.own):
            raise ValueError(f"seats {self.own} name a seat twice")

    @property
    def credentials(self) -> tuple[str, str]:
        return self.host, self.secret

    @property
    def own_seats(self) -> list[int]:
        return list(self.own)

    def on_seats(self, *seats: int) -> Identity:
        return replace(self, own=seats)

    def for_seller(self, index: int, per_seller: int = SEATS_PER_SELLER) -> Identity:
        """The seats of this host's `index`-th seller (`per_seller` each, in turn)."""
        return self.on_seats(*range(per_seller * index, per_seller * (index + 1)))

    def document(self) -> dict[str, Any]:
        """The identity as JSON, to hand to a seller in memory (never to a file)."""
        return {k: list(self.own) if k == "own" else getattr(self, k) for k in FIELDS}

    @classmethod
    def from_document(cls, doc: object) -> Identity:
        """`document()`'s inverse; ValueError when `doc` is not one."""
        try:
            assert isinstance(doc, dict) and isinstance(doc["own"], list)
            fields = {k: doc[k] for k in FIELDS}
            fields["own"] = tuple(fields["own"])
            return cls(**fields)
        except (AssertionError, KeyError, TypeError) as exc:
            raise ValueError(f"not an identity: {exc!r}") from None


FIELDS = ("host", "secret", "seats", "order", "own")


def parse_enrollment(doc: dict[str, Any], order: str, seats: int) -> Identity:
    """The market's 201 reply to an enrollment, checked against what was asked."""
    host, secret, got_seats, got_order = (doc.get(k) for k in ("host", "secret", "seats", "order"))
    if not isinstance(host, str) or not isinstance(secret, str):
        raise BadReply("the enrollment has no host id and secret")
    if got_seats != seats or got_order != order:
        raise BadReply(f"the enrollment is for {got_order!r} x {got_seats!r} seats, not {seats}")
    try:
        return Identity(host, secret, seats, order, tuple(range(seats)))
    except ValueError as exc:
        raise BadReply(f"the enrollment is malformed: {exc}") from None


def enroll(order: SellOrder, seats: int, stream: TextIO | None = None) -> Identity:
    """Enroll this machine with `seats` seats under `order`; say so on the console. While
    the machine is coming up without a route to the market, wait for one (NETWORK_WAIT)."""
    quiet_until = _CAME_UP + NETWORK_WAIT
    client = MarketClient(order, timeout=ENROLL_TIMEOUT)
    try:
        while True:
            try:
                doc = client.request_json("POST", "/v1/hosts", {"seats": seats})
                break
            except NoRoute:
                if time.monotonic() >= quiet_until:
                    raise
                time.sleep(NO_ROUTE_RETRY)
    finally:
        # The seller of this process that serves the order leases over this connection.
        client.hand_over()
    identity = parse_enrollment(doc or {}, order.order_id, seats)
    emit("enrolled", stream, order=order.order_id, host=identity.host, seats=seats)
    return identity


def enroll_patiently(
    order: SellOrder,
    seats: int,
    backoff_max: float,
    stream: TextIO | None = None,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> Identity | None:
    """Enroll, backing off while the market is unreachable, busy or refusing; None (after
    the one `what=revoked` line) when the order or its account is revoked."""
    backoff = Backoff(min(1.0, backoff_max), backoff_max)
    while True:
        try:
            return enroll(order, seats, stream)
        except Revoked as exc:
            say_revoked(order.order_id, exc, stream)
            return None
        except (Unreachable, Refused, BadReply) as exc:
            emit("error", stream, what=_what(exc), order=order.order_id, detail=str(exc))
            delay = backoff.next_delay()
            sleep(max(delay, exc.retry_after) if isinstance(exc, Busy) else delay)


def enroll_machine(
    orders: Sequence[SellOrder], backoff_max: float, stream: TextIO | None = None
) -> list[Identity | None]:
    """The identity of each of this machine's sellers, one seller per entry of `orders`:
    each distinct order (market and id) is enrolled once, with SEATS_PER_SELLER seats per
    seller serving it (a new host when MAX_SEATS runs out), seats numbered in turn; None for
    a revoked order."""
    sellers: dict[tuple[str, str], list[int]] = {}
    for i, order in enumerate(orders):
        sellers.setdefault((order.market_url, order.order_id), []).append(i)
    found: list[Identity | None] = [None] * len(orders)
    for indices in sellers.values():
        per_host = MAX_SEATS // SEATS_PER_SELLER
        for start in range(0, len(indices), per_host):
            chunk = indices[start : start + per_host]
            seats = SEATS_PER_SELLER * len(chunk)
            host = enroll_patiently(orders[chunk[0]], seats, backoff_max, stream)
            if host is None:
                break
            for index, i in enumerate(chunk):
                found[i] = host.for_seller(index)
    return found


def _what(exc: Exception) -> str:
    """The console's name for a failure, as the seller's loop names it."""
    if isinstance(exc, Busy):
        return "market-busy"
    if isinstance(exc, Unreachable):
        return "market-unreachable"
    return "market-refused" if isinstance(exc, Refused) else "bad-reply"


def say_revoked(order: str, exc: Revoked, stream: TextIO | None = None) -> None:
    """The one console line of a seller the market will not serve any more."""
    emit("error", stream, what="revoked", order=order, detail=str(exc))


def write_identity(fd: int, identity: Identity | None) -> None:
    """Hand `identity` (one line) to the process holding the read end of pipe `fd`, and
    close it; None closes it with nothing said: no host (its order is revoked). Smaller
    than a pipe's buffer, so this never blocks."""
    try:
        if identity is not None:
            data = json.dumps(identity.document()).encode() + b"\n"
            assert len(data) < MAX_IDENTITY_BYTES
            os.write(fd, data)
    finally:
        os.close(fd)


def read_identity(fd: int) -> Identity | None:
    """The identity written to the other end of pipe `fd` (waiting for it as long as it
    takes), then closes `fd`; None when that end closed with nothing said, ValueError
    when what it said is not an identity."""
    data = b""
    try:
        while not data.endswith(b"\n") and (chunk := os.read(fd, MAX_IDENTITY_BYTES)):
            data += chunk
            if len(data) > MAX_IDENTITY_BYTES:
                raise ValueError("more than an identity")
    finally:
        os.close(fd)
    return Identity.from_document(json.loads(data)) if data else None
