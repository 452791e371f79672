"""Volunteers' pages: their sell orders (made, revoked, downloaded as a `.cpu` file, a
CPUSHARE stick image or a live CD of their own, as `market.personal` makes them) and the
machines enrolled with them."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from market import hosts, personal
from market.downloads import cpu_response, iso_response, stick_response
from market.errors import MarketError
from market.trust import TRUSTED
from market.web.portal import Portal, Visitor, redirect


def _term(form_value: object, name: str, what: str) -> int:
    default, low, high = personal.TERMS[name]
    if form_value in (None, ""):
        return default
    if not isinstance(form_value, str) or not form_value.strip().isdigit():
        raise MarketError(f"{what} must be a whole number from {low} to {high}")
    return int(form_value)


async def orders_page(portal: Portal, _request: Request, visitor: Visitor) -> Response:
    user = visitor.need_user()
    rows = portal.market.db.reader.execute(
        "SELECT o.id, o.created, o.revoked, "
        "(SELECT count(*) FROM hosts h WHERE h.order_id = o.id AND h.revoked IS NULL), "
        "o.web_terms IS NOT NULL "
        "FROM orders o WHERE o.account_id = ? ORDER BY o.created DESC",
        (user.id,),
    ).fetchall()
    return portal.page(visitor, "orders.html", orders=rows)


async def new_order(portal: Portal, request: Request, visitor: Visitor) -> Response:
    user = visitor.need_user()
    form = await portal.form(request, visitor)
    terms = personal.check_terms(
        {
            "nice": _term(form.get("nice"), "nice", "nice"),
            "max_memory_mb": _term(form.get("max_memory_mb"), "max_memory_mb", "memory (MB)"),
            "max_cpu_seconds": _term(form.get("max_cpu_seconds"), "max_cpu_seconds", "CPU seconds"),
        }
    )
    await portal.market.db.write(lambda c: personal.create_order(c, user.id, terms))
    return redirect("/account/orders")


async def revoke_order(portal: Portal, request: Request, visitor: Visitor) -> Response:
    user = visitor.need_user()
    await portal.form(request, visitor)
    order_id = request.path_params["order"]
    await portal.market.db.write(lambda c: hosts.revoke_order(c, order_id, user.id))
    portal.market.revoked()
    return redirect("/account/orders")


def _order_file(portal: Portal, request: Request, visitor: Visitor) -> tuple[str, str]:
    user = visitor.need_user()
    return personal.order_file(portal.market.db.reader, user.id, request.path_params["order"])


async def order_file(portal: Portal, request: Request, visitor: Visitor) -> Response:
    return cpu_response(*_order_file(portal, request, visitor))


async def stick_image(portal: Portal, request: Request, visitor: Visitor) -> Response:
    return stick_response(*_order_file(portal, request, visitor))


async def live_cd(portal: Portal, request: Request, visitor: Visitor) -> Response:
    name, text = _order_file(portal, request, visitor)
    return iso_response(portal.market.config.livecd, name, text)


async def machines_page(portal: Portal, _request: Request, visitor: Visitor) -> Response:
    user = visitor.need_user()
    rows = portal.market.db.reader.execute(
        """
        SELECT h.id, h.order_id, h.seats, h.network, h.created, h.revoked,
               (SELECT max(l.created) FROM leases l WHERE l.host_id = h.id),
               (SELECT count(*) FROM results r WHERE r.host_id = h.id
                  AND r.verdict = 'accepted'),
               (SELECT coalesce(sum(r.cpu_seconds), 0) FROM results r WHERE r.host_id = h.id),
               (SELECT coalesce(sum(t.millicoins), 0) FROM transfers t
                  JOIN results r ON r.id = t.result_id WHERE r.host_id = h.id),
               (SELECT coalesce(max(valid), 0) FROM trust WHERE trust.host_id = h.id)
        FROM hosts h JOIN orders o ON o.id = h.order_id
        WHERE o.account_id = ? ORDER BY h.created DESC
        """,
        (user.id,),
    ).fetchall()
    return portal.page(visitor, "machines.html", machines=rows, trusted=TRUSTED)
