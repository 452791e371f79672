"""The operator's pages: every account (grant coins, disable, enable), order and host
(revoke), and the market's health; the same operations as `livecd market ...`."""

from __future__ import annotations

import time
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response

from market import accounts, hosts, integrity, ledger
from market.dialect import Connection
from market.errors import MarketError
from market.schema import SCHEMA_VERSION
from market.web.account import text
from market.web.portal import Handler, Portal, Visitor, redirect

MAX_GRANT = 10**12


async def operator_page(portal: Portal, _request: Request, visitor: Visitor) -> Response:
    visitor.need_operator()
    reader = portal.market.db.reader
    account_rows = reader.execute(
        "SELECT a.id, a.name, a.millicoins, a.disabled, a.operator, "
        "(SELECT count(*) FROM orders o WHERE o.account_id = a.id) "
        "FROM accounts a ORDER BY a.name"
    ).fetchall()
    order_rows = reader.execute(
        "SELECT o.id, a.name, o.created, o.revoked, "
        "(SELECT count(*) FROM hosts h WHERE h.order_id = o.id) "
        "FROM orders o JOIN accounts a ON a.id = o.account_id ORDER BY o.created DESC LIMIT 500"
    ).fetchall()
    host_rows = hosts.list_hosts(reader)
    return portal.page(
        visitor,
        "operator.html",
        accounts=account_rows,
        orders=order_rows,
        hosts=host_rows[-500:][::-1],
        health=_health(portal, reader),
    )


def _health(portal: Portal, reader: Connection) -> dict[str, object]:
    """What `livecd market ledger-check` and /v1/stats say, and the store's state."""
    now = time.time()
    doc = portal.market.public_stats.get(reader, now)
    problems = ledger.check(reader) + integrity.check(reader)
    return {
        "schema": SCHEMA_VERSION,
        "engine": "PostgreSQL" if isinstance(portal.market.db.db, str) else "SQLite",
        "jobs": doc["jobs"],
        "leases": doc["leases_active"],
        "results_last_hour": doc["results_last_hour"],
        "ledger": problems,
    }


def _revoker(param: str, revoke: Callable[[Connection, str], None]) -> Handler:
    """The form that revokes the host or order (of any account) the path's `param` names."""

    async def handler(portal: Portal, request: Request, visitor: Visitor) -> Response:
        visitor.need_operator()
        await portal.form(request, visitor)
        named = request.path_params[param]
        await portal.market.db.write(lambda c: revoke(c, named))
        portal.market.revoked()
        return redirect("/operator")

    return handler


revoke_host = _revoker("host", hosts.revoke_host)
revoke_order = _revoker("order", hosts.revoke_order)


async def set_disabled(portal: Portal, request: Request, visitor: Visitor) -> Response:
    me = visitor.need_operator()
    form = await portal.form(request, visitor)
    name = request.path_params["name"]
    disable = form.get("disabled") == "yes"
    if disable and name == me.name:
        raise MarketError("you cannot disable your own account here: use the command line")

    def change(conn: Connection) -> None:
        account = accounts.account_id(conn, name)
        hosts.set_account_disabled(conn, account, disable)

    await portal.market.db.write(change)
    portal.market.revoked()
    return redirect("/operator")


async def grant(portal: Portal, request: Request, visitor: Visitor) -> Response:
    visitor.need_operator()
    form = await portal.form(request, visitor)
    name = request.path_params["name"]
    raw = text(form, "coins", "the coins to grant", 20)
    try:
        millicoins = round(float(raw) * 1000)
    except ValueError:
        raise MarketError(f"coins {raw!r} is not a number") from None
    if not 1 <= millicoins <= MAX_GRANT * 1000:
        raise MarketError(f"grant from 0.001 to {MAX_GRANT} coins, not {raw}")

    def give(conn: Connection) -> None:
        ledger.grant(conn, accounts.account_id(conn, name), millicoins, time.time())

    await portal.market.db.write(give)
    return redirect("/operator")
