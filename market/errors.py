"""Errors the market turns into an HTTP status and a JSON body `{"error": "..."}`."""

from __future__ import annotations


class MarketError(Exception):
    """A request the market refuses; the message says what is wrong and what to do."""

    status = 400
    # A word a client may act on without parsing the message ("revoked").
    code: str | None = None


class NotFound(MarketError):
    status = 404


class Unauthorized(MarketError):
    status = 401


class Forbidden(MarketError):
    status = 403


class Conflict(MarketError):
    status = 409


class Gone(MarketError):
    status = 410


class TooLarge(MarketError):
    status = 413


class Unavailable(MarketError):
    """The database cannot be reached (restarting, say): nothing of the request was kept."""

    status = 503
    retry_after = 1.0


class TooManyRequests(MarketError):
    status = 429

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after
