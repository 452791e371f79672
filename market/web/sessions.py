"""Signed-in browsers: a random session id in a signed cookie, the id's sha256 in the
database with its account; a CSRF token per session id.

The signing key is the market's (`market.keys`), shared by every instance through the
database. A visitor who is not signed in gets
an id too (not stored): its CSRF token guards the sign-up and sign-in forms. Signing in
always starts a new id, so an id planted in a browser beforehand never becomes signed in.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from market import keys
from market.dialect import Connection

COOKIE = "cpushare_session"
SESSION_SECONDS = 14 * 24 * 3600


@dataclass(frozen=True)
class User:
    id: int
    name: str
    operator: bool


def new_id() -> str:
    return secrets.token_urlsafe(32)


def sign(key: bytes, session_id: str) -> str:
    return f"{session_id}.{keys.mac(key, 'cookie', session_id)}"


def unsign(key: bytes, cookie: str | None) -> str | None:
    """The session id in a cookie whose signature checks, else None."""
    if not cookie:
        return None
    session_id, _, mac = cookie.rpartition(".")
    if not session_id or not hmac.compare_digest(mac, keys.mac(key, "cookie", session_id)):
        return None
    return session_id


def csrf_token(key: bytes, session_id: str) -> str:
    return keys.mac(key, "csrf", session_id)


def csrf_ok(key: bytes, session_id: str | None, token: str) -> bool:
    return session_id is not None and hmac.compare_digest(token, csrf_token(key, session_id))


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
