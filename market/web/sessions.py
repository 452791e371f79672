"""Signed-in browsers: a random session id in a signed cookie, the id's sha256 in the
database with its account; a CSRF token per session id.

The signing key is made on the market's first start and kept in its settings, so every
instance sharing the database signs and checks alike. A visitor who is not signed in gets
an id too (not stored): its CSRF token guards the sign-up and sign-in forms. Signing in
always starts a new id, so an id planted in a browser beforehand never becomes signed in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from market import accounts
from market.dialect import Connection

COOKIE = "cpushare_session"
SECRET_SETTING = "web_secret"
SESSION_SECONDS = 14 * 24 * 3600


@dataclass(frozen=True)
class User:
    id: int
    name: str
    operator: bool


def ensure_secret(conn: Connection) -> None:
    """Make the signing key once; instances starting together keep whichever came first."""
    conn.execute(
        "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
        (SECRET_SETTING, secrets.token_urlsafe(32)),
    )


def load_secret(conn: Connection) -> bytes | None:
    value = accounts.get_setting(conn, SECRET_SETTING)
    return None if value is None else value.encode()


def _mac(key: bytes, purpose: str, value: str) -> str:
    digest = hmac.new(key, f"{purpose}:{value}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def new_id() -> str:
    return secrets.token_urlsafe(32)


def sign(key: bytes, session_id: str) -> str:
    return f"{session_id}.{_mac(key, 'cookie', session_id)}"


def unsign(key: bytes, cookie: str | None) -> str | None:
    """The session id in a cookie whose signature checks, else None."""
    if not cookie:
        return None
    session_id, _, mac = cookie.rpartition(".")
    if not session_id or not hmac.compare_digest(mac, _mac(key, "cookie", session_id)):
        return None
    return session_id


def csrf_token(key: bytes, session_id: str) -> str:
    return _mac(key, "csrf", session_id)


def csrf_ok(key: bytes, session_id: str | None, token: str) -> bool:
    return session_id is not None and hmac.compare_digest(token, csrf_token(key, session_id))


def order_secret(key: bytes, order_id: str) -> str:
    """The secret of an order made on the pages: derived, so its owner can download its
    `.cpu` file again (the database keeps only its hash, as for every order)."""
    return _mac(key, "order", order_id)


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def start(conn: Connection, session_id: str, account: int, now: float) -> None:
    conn.execute("DELETE FROM web_sessions WHERE expires < ?", (now,))
    conn.execute(
        "INSERT INTO web_sessions (id_hash, account_id, created, expires) VALUES (?, ?, ?, ?)",
        (_hash(session_id), account, now, now + SESSION_SECONDS),
    )


def end(conn: Connection, session_id: str) -> None:
    conn.execute("DELETE FROM web_sessions WHERE id_hash = ?", (_hash(session_id),))


def end_all(conn: Connection, account: int) -> None:
    """Sign the account out everywhere (its password changed, or it was disabled)."""
    conn.execute("DELETE FROM web_sessions WHERE account_id = ?", (account,))


def user_of(conn: Connection, session_id: str) -> User | None:
    """The account signed in with this id: not expired, not disabled."""
    row = conn.execute(
        "SELECT a.id, a.name, a.operator FROM web_sessions s "
        "JOIN accounts a ON a.id = s.account_id "
        "WHERE s.id_hash = ? AND s.expires > ? AND a.disabled IS NULL",
        (_hash(session_id), time.time()),
    ).fetchone()
    return None if row is None else User(int(row[0]), str(row[1]), bool(row[2]))
