"""Accounts (API keys) and sell orders (secrets): issuing them and checking credentials.

Keys and secrets are 256-bit random tokens, so a plain sha256 is enough to store them:
there is nothing to brute-force. Only the hashes are kept.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
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


def create_order(
    conn: Connection, account: str, secret_of: Callable[[str], str] | None = None
) -> IssuedOrder:
    """A new sell order crediting `account`, with its secret (shown once), random or
    `secret_of(order_id)` (the web portal derives it, so it can hand the file out again)."""
    owner = account_id(conn, account)
    order_id = "o-" + secrets.token_hex(8)
    secret = secrets.token_urlsafe(32) if secret_of is None else secret_of(order_id)
    conn.execute(
        "INSERT INTO orders (id, account_id, secret_hash, created) VALUES (?, ?, ?, ?)",
        (order_id, owner, token_hash(secret), time.time()),
    )
    return IssuedOrder(order_id, secret, account)


def account_row(conn: Connection, api_key: str) -> int | None:
    """The account id an API key belongs to, -1 if that account is disabled, or None.
    The key is the account's first (accounts.key_hash) or one made later (api_keys)."""
    digest = token_hash(api_key)
    row = conn.execute("SELECT id, disabled FROM accounts WHERE key_hash = ?", (digest,)).fetchone()
    if row is None:
        row = conn.execute(
            "SELECT a.id, a.disabled FROM api_keys k JOIN accounts a ON a.id = k.account_id "
            "WHERE k.key_hash = ? AND k.revoked IS NULL",
            (digest,),
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


def create_api_key(conn: Connection, account: int, label: str) -> str:
    """Another API key for the account (shown once; only its hash is stored)."""
    api_key = "ck-" + secrets.token_urlsafe(32)
    conn.execute(
        "INSERT INTO api_keys (account_id, key_hash, label, created) VALUES (?, ?, ?, ?)",
        (account, token_hash(api_key), label, time.time()),
    )
    return api_key


def revoke_api_key(conn: Connection, account: int, key_id: int) -> None:
    """Revoke one of the account's keys made with create_api_key."""
    cursor = conn.execute(
        "UPDATE api_keys SET revoked = coalesce(revoked, ?) WHERE id = ? AND account_id = ?",
        (time.time(), key_id, account),
    )
    if cursor.rowcount != 1:
        raise NotFound(f"no API key {key_id} in your account")


def set_operator(conn: Connection, name: str, on: bool) -> None:
    """Make account NAME one of the market's operators on the web pages, or not."""
    conn.execute("UPDATE accounts SET operator = ? WHERE id = ?", (int(on), account_id(conn, name)))
