"""Accounts (API keys) and sell orders (secrets): issuing them and checking credentials.

Keys and secrets are 256-bit random tokens, so a plain sha256 is enough to store them:
there is nothing to brute-force. Only the hashes are kept.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from cpushare.order import ACCOUNT
from market.dialect import INTEGRITY_ERRORS, Connection
from market.errors import Conflict, MarketError, NotFound


@dataclass(frozen=True)
class IssuedAccount:
    id: int
    name: str
    api_key: str


@dataclass(frozen=True)
class IssuedOrder:
    order_id: str
    secret: str
    account: str


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_account(conn: Connection, name: str) -> IssuedAccount:
    """A new account and its API key (shown once; only its hash is stored)."""
    if not ACCOUNT.fullmatch(name):
        raise MarketError(
            f"account name {name!r} is malformed: use lower-case letters, digits, '.', '-', '_'"
        )
    api_key = "ck-" + secrets.token_urlsafe(32)
    try:
        row = conn.execute(
            "INSERT INTO accounts (name, key_hash, created) VALUES (?, ?, ?) RETURNING id",
            (name, token_hash(api_key), time.time()),
        ).fetchone()
    except INTEGRITY_ERRORS:
        raise Conflict(f"account {name!r} already exists") from None
    return IssuedAccount(int(row[0]), name, api_key)


def account_id(conn: Connection, name: str) -> int:
    row = conn.execute("SELECT id FROM accounts WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise NotFound(f"no account {name!r}: create it with `livecd market account new`")
    return int(row[0])


def create_order(conn: Connection, account: str) -> IssuedOrder:
    """A new sell order crediting `account`, with its secret (shown once)."""
    owner = account_id(conn, account)
    order_id = "o-" + secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    conn.execute(
        "INSERT INTO orders (id, account_id, secret_hash, created) VALUES (?, ?, ?, ?)",
        (order_id, owner, token_hash(secret), time.time()),
    )
    return IssuedOrder(order_id, secret, account)


def account_row(conn: Connection, api_key: str) -> int | None:
    """The account id an API key belongs to, -1 if that account is disabled, or None."""
    row = conn.execute(
        "SELECT id, disabled FROM accounts WHERE key_hash = ?", (token_hash(api_key),)
    ).fetchone()
    if row is None:
        return None
    return -1 if row[1] is not None else int(row[0])


def list_accounts(conn: Connection) -> list[dict[str, object]]:
    """Every account with its order count and CPUCoins earned."""
    rows = conn.execute(
        """
        SELECT a.name,
               (SELECT count(*) FROM orders o WHERE o.account_id = a.id),
               a.millicoins, a.disabled IS NOT NULL
        FROM accounts a ORDER BY a.name
        """
    ).fetchall()
    return [{"name": n, "orders": o, "coins": m / 1000, "disabled": bool(d)} for n, o, m, d in rows]


def get_setting(conn: Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def set_setting(conn: Connection, key: str, value: str | None) -> None:
    if value is None:
        conn.execute("DELETE FROM settings WHERE key = ?", (key,))
    else:
        conn.execute(
            "INSERT INTO settings (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )
