"""The market's signing key: made once, kept in its settings so every instance sharing the
database signs and checks alike. It signs session cookies and CSRF tokens (`market.web`)
and derives the secrets of the orders volunteers make themselves (`market.personal`), so
their `.cpu` file can be handed out again while the database keeps only its hash.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from market import accounts
from market.dialect import Connection

SETTING = "signing_key"


def ensure(conn: Connection) -> bytes:
    """The key, made first if missing; instances starting together keep whichever came first."""
    conn.execute(
        "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
        (SETTING, secrets.token_urlsafe(32)),
    )
    key = load(conn)
    assert key is not None
    return key


def load(conn: Connection) -> bytes | None:
    value = accounts.get_setting(conn, SETTING)
    return None if value is None else value.encode()


def mac(key: bytes, purpose: str, value: str) -> str:
    """A keyed digest of `value` for one `purpose` (a cookie's and an order's never collide)."""
    digest = hmac.new(key, f"{purpose}:{value}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def order_secret(key: bytes, order_id: str) -> str:
    """The secret of an order a volunteer made: derived, never stored."""
    return mac(key, "order", order_id)
