"""The `livecd market` group and what its commands share: the --db option, JSON output,
and the market's refusals turned into one-line user errors. The commands themselves are in
`market` (serve, migrate, openapi, cert), `market_admin`, `market_buyer` and
`market_transfer`, which import this module and never each other's group."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from livecd.cli import main
from livecd.errors import UserError

if TYPE_CHECKING:
    from market.dialect import Location


def echo_json(doc: object) -> None:
    click.echo(json.dumps(doc, indent=2, sort_keys=True))


def _market_errors() -> tuple[type[Exception], ...]:
    from market.buyer import ClientError
    from market.errors import MarketError
    from market.schema import SchemaTooNew

    return ClientError, MarketError, SchemaTooNew


def user_errors(fn: Callable[[], Any]) -> Any:
    """Run fn, turning the market's refusals into one-line user errors."""
    try:
        return fn()
    except _market_errors() as exc:
        raise UserError(str(exc)) from None


@main.group()
def market() -> None:
    """The CPUShare market: serve it, issue accounts and orders, submit jobs, get results."""


def _db_location(_ctx: click.Context, _param: click.Parameter, value: str) -> Location:
    from market.dialect import location

    return location(value)


db_option = click.option(
    "--db",
    required=True,
    envvar="CPUSHARE_MARKET_DB",
    callback=_db_location,
    help="The market's database: a SQLite file, or a postgresql:// URL "
    "(e.g. postgresql:///market?host=/var/run/postgresql) [env CPUSHARE_MARKET_DB].",
)
