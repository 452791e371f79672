"""The operator's commands, run on the market's host against its database directly:
accounts, coins, sell orders and hosts. Both engines let them run beside a live server,
whose credential caches notice a revocation within a second."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from cpushare.order import SellOrder
from market import accounts, hosts, integrity, ledger, stats
from market.dialect import Connection, Location
from market.errors import MarketError
from market.store import transact

T = TypeVar("T")


def _transaction(db: Location, op: Callable[[Connection], T]) -> T:
    if isinstance(db, Path) and not db.exists():
        raise MarketError(f"no market database {db}: start one with `livecd market serve --db`")
    return transact(db, op)


def new_account(db: Location, name: str) -> accounts.IssuedAccount:
    """Create an account; its API key is in the result and nowhere else."""
    return _transaction(db, lambda conn: accounts.create_account(conn, name))


def list_accounts(db: Location) -> list[dict[str, object]]:
    return _transaction(db, accounts.list_accounts)


def set_leaderboard(db: Location, name: str, on: bool) -> None:
    """Put the account on the public leaderboard (its name and coins), or take it off."""
    _transaction(db, lambda conn: stats.set_leaderboard(conn, name, on))


def set_operator(db: Location, name: str, on: bool) -> None:
    """Let account NAME use the operator's web pages, or no longer."""
    _transaction(db, lambda conn: accounts.set_operator(conn, name, on))


def new_order(
    db: Location,
    account: str,
    deliver: Callable[[SellOrder], None],
    *,
    public_url: str | None = None,
    nice: int = 19,
    max_memory_mb: int = 256,
    max_cpu_seconds: int = 60,
) -> SellOrder:
    """Issue a sell order crediting `account`, addressed as sellers see the market.

    `deliver` (which writes the `.cpu` file) runs before the commit: if it fails, the
    order is not issued.
    """

    def issue(conn: Connection) -> SellOrder:
        url = public_url or accounts.get_setting(conn, "public_url")
        if url is None:
            raise MarketError(
                "the market's public URL is unknown: give --public-url, "
                "or start the market once with `livecd market serve --public-url`"
            )
        issued = accounts.create_order(conn, account)
        order = SellOrder(
            market_url=url.rstrip("/"),
            order_id=issued.order_id,
            secret=issued.secret,
            account=account,
            cert_sha256=accounts.get_setting(conn, "cert_sha256"),
            nice=nice,
            max_memory_mb=max_memory_mb,
            max_cpu_seconds=max_cpu_seconds,
        )
        deliver(order)
        return order

    return _transaction(db, issue)


def grant(db: Location, name: str, coins: float) -> float:
    """Give account NAME coins from the mint; return its new balance in coins."""

    def give(conn: Connection) -> float:
        owner = accounts.account_id(conn, name)
        ledger.grant(conn, owner, round(coins * 1000), time.time())
        return ledger.balance(conn, owner) / 1000

    return _transaction(db, give)


def set_account_disabled(db: Location, name: str, disabled: bool) -> None:
    """Disable an account (its key, orders and hosts are refused at once) or enable it again."""
    _transaction(
        db, lambda conn: hosts.set_account_disabled(conn, accounts.account_id(conn, name), disabled)
    )


def revoke_order(db: Location, order_id: str) -> None:
    _transaction(db, lambda conn: hosts.revoke_order(conn, order_id))


def revoke_host(db: Location, host_id: str) -> None:
    _transaction(db, lambda conn: hosts.revoke_host(conn, host_id))


def list_hosts(db: Location) -> list[dict[str, object]]:
    return _transaction(db, hosts.list_hosts)


def check_ledger(db: Location) -> list[str]:
    """Every way the coin books disagree with themselves, or the rows they stand on break
    the rules the database does not check itself (market.integrity); empty: all is well."""
    return _transaction(db, lambda conn: ledger.check(conn) + integrity.check(conn))
