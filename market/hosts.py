"""Hosts: one machine each, enrolled with a sell order, the unit every lease is checked against.

An order is only the right to enroll: the stock CD's order may be public, and still nobody
can touch another machine's leases, since each host has a secret of its own (32 random
bytes; only its sha256 is kept). Hosts, orders and accounts can be revoked or disabled; the
host's active leases go back to the queue in the same transaction.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import time
from dataclasses import dataclass

from cpushare.protocol import MAX_SEATS
from market.accounts import token_hash
from market.dialect import Connection
from market.errors import Forbidden, MarketError, NotFound
from market.slots import refresh_slots

HOST_PREFIX = "host-"


class Revoked(Forbidden):
    """The host, its order or its account was revoked or disabled: stop asking."""

    code = "revoked"


@dataclass(frozen=True)
class Host:
    """An authenticated host: what every seller route checks leases against."""

    id: str
    order_id: str
    account_id: int
    seats: int
    network: str


@dataclass(frozen=True)
class Enrolled:
    host_id: str
    secret: str
    seats: int
    order_id: str


def network_of(address: str) -> str:
    """The network one machine is counted by: an IPv4 address, or an IPv6 /64."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def enroll(conn: Connection, order_id: str, seats: int, network: str) -> Enrolled:
    """A new host for an order (checked by the caller), with its secret (shown once)."""
    if not 1 <= seats <= MAX_SEATS:
        raise MarketError(f"seats must be from 1 to {MAX_SEATS}, not {seats}")
    host_id = HOST_PREFIX + secrets.token_hex(12)
    secret = secrets.token_urlsafe(32)
    conn.execute(
        "INSERT INTO hosts (id, order_id, secret_hash, seats, network, created) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (host_id, order_id, token_hash(secret), seats, network, time.time()),
    )
    return Enrolled(host_id, secret, seats, order_id)


def check_order(conn: Connection, order_id: str, secret: str) -> bool:
    """True if the order's secret matches; Revoked if the order or its account is."""
    row = conn.execute(
        "SELECT o.secret_hash, o.revoked, a.disabled FROM orders o "
        "JOIN accounts a ON a.id = o.account_id WHERE o.id = ?",
        (order_id,),
    ).fetchone()
    if row is None or not hmac.compare_digest(row[0], token_hash(secret)):
        return False
    if row[1] is not None:
        raise Revoked(f"order {order_id} was revoked")
    if row[2] is not None:
        raise Revoked(f"the account of order {order_id} is disabled")
    return True


def authenticate(conn: Connection, host_id: str, secret: str) -> Host | None:
    """The host if the secret matches, None if not; Revoked if it, its order or account is."""
    row = conn.execute(
        "SELECT h.secret_hash, h.order_id, o.account_id, h.seats, h.network, "
        "h.revoked, o.revoked, a.disabled FROM hosts h JOIN orders o ON o.id = h.order_id "
        "JOIN accounts a ON a.id = o.account_id WHERE h.id = ?",
        (host_id,),
    ).fetchone()
    if row is None or not hmac.compare_digest(row[0], token_hash(secret)):
        return None
    what = {5: "host", 6: "order", 7: "account"}
    for index, name in what.items():
        if row[index] is not None:
            verb = "disabled" if name == "account" else "revoked"
            raise Revoked(f"this {name} was {verb} by the market's operator or its owner")
    return Host(host_id, row[1], int(row[2]), int(row[3]), row[4])


def _requeue_hosts(conn: Connection, where: str, args: tuple[object, ...]) -> int:
    """Expire the active leases of the hosts matching `where`; their jobs go back now."""
    now = time.time()
    rows = conn.execute(
        f"SELECT id, job_id FROM leases WHERE state = 'active' AND host_id IN "
        f"(SELECT id FROM hosts WHERE {where})",
        args,
    ).fetchall()
    conn.executemany(
        "UPDATE leases SET state = 'expired', deadline = ?, released = ? WHERE id = ?",
        [(now, now, r[0]) for r in rows],
    )
    for job_id in sorted({r[1] for r in rows}):
        refresh_slots(conn, job_id)
    return len(rows)


def _owned(conn: Connection, table: str, key: str, owner: int | None) -> None:
    sql = {
        "hosts": "SELECT o.account_id FROM hosts h JOIN orders o ON o.id = h.order_id "
        "WHERE h.id = ?",
        "orders": "SELECT account_id FROM orders WHERE id = ?",
    }[table]
    row = conn.execute(sql, (key,)).fetchone()
    # Another account's host or order is reported as missing: its name tells nothing.
    if row is None or (owner is not None and row[0] != owner):
        raise NotFound(f"no {table[:-1]} {key!r}" + ("" if owner is None else " in your account"))


def revoke_host(conn: Connection, host_id: str, owner: int | None = None) -> None:
    """Revoke a host (of `owner`'s orders, unless the operator asks): at once, for good."""
    _owned(conn, "hosts", host_id, owner)
    conn.execute(
        "UPDATE hosts SET revoked = coalesce(revoked, ?) WHERE id = ?", (time.time(), host_id)
    )
    _requeue_hosts(conn, "id = ?", (host_id,))


def revoke_order(conn: Connection, order_id: str, owner: int | None = None) -> None:
    """Revoke an order: it enrolls no more hosts, and its hosts stop at once."""
    _owned(conn, "orders", order_id, owner)
    conn.execute(
        "UPDATE orders SET revoked = coalesce(revoked, ?) WHERE id = ?", (time.time(), order_id)
    )
    _requeue_hosts(conn, "order_id = ?", (order_id,))


def set_account_disabled(conn: Connection, account_id: int, disabled: bool) -> None:
    """Disable (or enable again) an account: its key, orders and hosts are refused meanwhile."""
    conn.execute(
        "UPDATE accounts SET disabled = ? WHERE id = ?",
        (time.time() if disabled else None, account_id),
    )
    if disabled:
        _requeue_hosts(
            conn, "order_id IN (SELECT id FROM orders WHERE account_id = ?)", (account_id,)
        )


def list_hosts(conn: Connection) -> list[dict[str, object]]:
    """Every host with its order, account, network, seats, state and active leases."""
    rows = conn.execute(
        """
        SELECT h.id, h.order_id, a.name, h.network, h.seats, h.created, h.revoked,
               (SELECT count(*) FROM leases l WHERE l.host_id = h.id AND l.state = 'active')
        FROM hosts h JOIN orders o ON o.id = h.order_id JOIN accounts a ON a.id = o.account_id
        ORDER BY h.created
        """
    ).fetchall()
    keys = ("host", "order", "account", "network", "seats", "created", "revoked", "leases")
    return [dict(zip(keys, row, strict=True)) for row in rows]
