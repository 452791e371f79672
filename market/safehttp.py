"""HTTP from the host's tools to a market or an order server, safely: https (plain http
only to loopback, where nothing is on the wire), and redirects followed only on the same
host. An API key or an order's secret must never travel in the clear, nor to a host the
user did not name. Shared by the buyer's client and `livecd order fetch` / `build --order`.
"""

from __future__ import annotations

import urllib.parse

import requests

from cpushare.order import is_loopback_host

MAX_REDIRECTS = 5


class UnsafeURL(requests.RequestException):
    """A URL or a redirect this client refuses to follow; the message names it."""


def check_url(url: str) -> None:
    """UnsafeURL unless `url` is https, or http to a loopback host."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname
        port = parts.port
    except ValueError as exc:
        raise UnsafeURL(f"{url} is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not host or port == 0:
        raise UnsafeURL(f"{url} is not an http(s) URL")
    if parts.scheme == "http" and not is_loopback_host(host):
        raise UnsafeURL(
            f"{url} is plain http to another machine: anyone on the way could read or change "
            "what is sent; use https:// (plain http is allowed to loopback only)"
        )


def _origin(url: str) -> tuple[str, int | None]:
    parts = urllib.parse.urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return (parts.hostname or "", parts.port or default)


class SameHostSession(requests.Session):
    """A requests session that follows a redirect only to the same host and port, and
    never from https to plain http off loopback."""

    def __init__(self) -> None:
        super().__init__()
        self.max_redirects = MAX_REDIRECTS

    def get_redirect_target(self, resp: requests.Response) -> str | None:
        target = super().get_redirect_target(resp)
        if target is None:
            return None
        # requests hands the raw Location back; resolve it as it would.
        absolute = urllib.parse.urljoin(resp.url, target)
        if _origin(absolute) != _origin(resp.url):
            raise UnsafeURL(f"{resp.url} redirects to another host: {absolute}; not followed")
        check_url(absolute)
        return target
