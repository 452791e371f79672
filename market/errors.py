"""Errors the market turns into an HTTP status and a JSON body `{"error": "..."}`."""

from __future__ import annotations


class MarketError(Exception):
    """A request the market refuses; the message says what is wrong and what to do."""

    status = 400


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
