"""What a market's reply means to its seller, as exceptions (or values, for a batch's
items): try again later, final refusal, or a reply not to be trusted. The wire documents
(cpushare.protocol) and the seller's client (cpushare.seller.client) both speak them."""

from __future__ import annotations


class Unreachable(Exception):
    """No usable answer now (network down, TLS or pin failure, 5xx): back off and retry."""


class NoRoute(Unreachable):
    """This machine has no way to the market yet: no route to it, no address to send from,
    or no name server to ask (a machine still coming up, before DHCP). Found out locally,
    without a packet sent to the market, so cheap to ask again soon."""


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
