"""`livecd market account|host|order|ledger-check`: the operator's commands, run on the
market's host against its database directly (beside a running server)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from livecd.cli.market_group import db_option, echo_json, market, user_errors
from livecd.cli.options import json_option, order_output_option, order_terms_options
from livecd.errors import UserError
from livecd.orders import write_order

if TYPE_CHECKING:
    from market.dialect import Location


@market.group()
def account() -> None:
    """Accounts: who buys jobs and who is credited CPUCoins."""


@account.command("new")
@click.argument("name")
@db_option
@json_option
def account_new(name: str, db: Location, as_json: bool) -> None:
    """Create account NAME and print its API key (shown only this once)."""
    from market.admin import new_account

    issued = user_errors(lambda: new_account(db, name))
    if as_json:
        echo_json({"account": issued.name, "api_key": issued.api_key})
    else:
        click.echo(f"account {issued.name}: api key {issued.api_key}")


@account.command("list")
@db_option
@json_option
def account_list(db: Location, as_json: bool) -> None:
    """List accounts with their orders and CPUCoins."""
    from market.admin import list_accounts

    _echo_rows(
        user_errors(lambda: list_accounts(db)),
        as_json,
        lambda row: f"{row['name']:20} orders={row['orders']:<5} coins={row['coins']:.3f}",
    )


def _echo_rows(
    rows: list[dict[str, Any]], as_json: bool, line: Callable[[dict[str, Any]], str]
) -> None:
    """A `list` command's rows: as JSON, or a line each."""
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        click.echo(line(row))


@account.command("grant")
@click.argument("name")
@click.argument("coins", type=click.FloatRange(0.001, 1e12))
@db_option
def account_grant(name: str, coins: float, db: Location) -> None:
    """Give account NAME COINS CPUCoins (a buyer needs them to submit jobs)."""
    from market.admin import grant

    balance = user_errors(lambda: grant(db, name, coins))
    click.echo(f"account {name}: {balance:.3f} coins")


def _account_switch(
    verb: str, doc: str, setter: str, said: tuple[str, str], *, on: bool = True, off_help: str = ""
) -> None:
    """`account VERB NAME`: market.admin's SETTER(db, NAME, ON), printing `account NAME:
    SAID[0]`; with OFF_HELP (the help of an --off flag), `--off` sets `not ON` and prints
    SAID[1]."""

    def run(name: str, db: Location, off: bool = False) -> None:
        from market import admin

        user_errors(lambda: getattr(admin, setter)(db, name, on != off))
        click.echo(f"account {name}: {said[off]}")

    command = db_option(run)
    if off_help:
        command = click.option("--off", is_flag=True, help=off_help)(command)
    account.command(verb, help=doc)(click.argument("name")(command))


_account_switch(
    "leaderboard",
    "Show account NAME and its coins on the public leaderboard (/v1/stats), or not.",
    "set_leaderboard",
    ("on the public leaderboard", "off the public leaderboard"),
    off_help="Take the account off the leaderboard.",
)
_account_switch(
    "operator",
    "Let account NAME, signed in on the web portal, see and act on every account,\n"
    "order and host (the pages under /operator), or no longer with --off.",
    "set_operator",
    ("now an operator on the web portal", "no longer an operator on the web portal"),
    off_help="Take the operator's pages away from the account.",
)
_account_switch(
    "disable",
    "Disable account NAME at once: its key, orders and hosts are refused until enabled.",
    "set_account_disabled",
    ("disabled; its hosts' leases went back to the queue", ""),
)
_account_switch(
    "enable", "Enable account NAME again.", "set_account_disabled", ("enabled", ""), on=False
)


@market.command("ledger-check")
@db_option
def ledger_check(db: Location) -> None:
    """Check that the coin books add up (balances and reservations = coins granted), and
    that the rows they stand on name rows that exist (market.integrity)."""
    from market.admin import check_ledger

    problems = user_errors(lambda: check_ledger(db))
    if problems:
        raise UserError("the ledger does not add up: " + "; ".join(problems[:10]))
    click.echo("ledger: the books add up")


@market.group()
def host() -> None:
    """Hosts: the machines enrolled with sell orders (one identity each, kept in RAM)."""


@host.command("list")
@db_option
@json_option
def host_list(db: Location, as_json: bool) -> None:
    """List hosts with their order, account, network, seats and active leases."""
    from market.admin import list_hosts

    _echo_rows(
        user_errors(lambda: list_hosts(db)),
        as_json,
        lambda row: (
            f"{row['host']} order={row['order']} account={row['account']} "
            f"network={row['network']} seats={row['seats']} "
            + ("revoked" if row["revoked"] else f"leases={row['leases']}")
        ),
    )


@host.command("revoke")
@click.argument("host_id")
@db_option
def host_revoke(host_id: str, db: Location) -> None:
    """Revoke HOST_ID at once and for good; its leases go back to the queue."""
    from market.admin import revoke_host

    user_errors(lambda: revoke_host(db, host_id))
    click.echo(f"host {host_id}: revoked")


@market.group("order")
def market_order() -> None:
    """Sell orders: the `.cpu` files sellers run with."""


@market_order.command("new")
@db_option
@click.option("--account", required=True, help="The account the order credits.")
@order_output_option
@click.option("--public-url", help="The market as sellers reach it [default: from serve].")
@order_terms_options
@json_option
def market_order_new(
    db: Location,
    account: str,
    output: Path,
    public_url: str | None,
    nice: int,
    max_memory_mb: int,
    max_cpu_seconds: int,
    as_json: bool,
) -> None:
    """Issue a sell order for ACCOUNT and write it to a `.cpu` file."""
    from market.admin import new_order

    order = user_errors(
        lambda: new_order(
            db,
            account,
            lambda o: write_order(o, output),
            public_url=public_url,
            nice=nice,
            max_memory_mb=max_memory_mb,
            max_cpu_seconds=max_cpu_seconds,
        )
    )
    if as_json:
        echo_json(
            {
                "file": str(output),
                "order_id": order.order_id,
                "account": account,
                "market_url": order.market_url,
            }
        )
    else:
        click.echo(f"wrote {output}: order {order.order_id} for {account} at {order.market_url}")


@market_order.command("revoke")
@click.argument("order_id")
@db_option
def market_order_revoke(order_id: str, db: Location) -> None:
    """Revoke ORDER_ID: it enrolls no more hosts and its hosts are refused at once."""
    from market.admin import revoke_order

    user_errors(lambda: revoke_order(db, order_id))
    click.echo(f"order {order_id}: revoked, with its hosts")
