"""Volunteers' pages: their sell orders (made, revoked, downloaded as a `.cpu` file, a
CPUSHARE stick image or a live CD of their own) and the machines enrolled with them."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response

from cpushare.order import SellOrder, render_order
from market import accounts, hosts
from market.dialect import Connection
from market.errors import MarketError, NotFound
from market.trust import TRUSTED
from market.web import sessions
from market.web.portal import Portal, Visitor, redirect

# What a volunteer may choose for a new order (the same bounds as `livecd market order new`).
MAX_MEMORY_MB = 64 << 10
MAX_CPU_SECONDS = 7 * 24 * 3600


def _bounded(value: object, what: str, low: int, high: int, default: int) -> int:
    if value in (None, ""):
        return default
    if not isinstance(value, str) or not value.strip().isdigit():
        raise MarketError(f"{what} must be a whole number from {low} to {high}")
    number = int(value)
    if not low <= number <= high:
        raise MarketError(f"{what} must be from {low} to {high}, not {number}")
    return number


def _order_row(conn: Connection, account: int, order_id: str) -> tuple[object, ...]:
    row = conn.execute(
        "SELECT id, created, revoked, web_terms FROM orders WHERE id = ? AND account_id = ?",
        (order_id, account),
    ).fetchone()
    if row is None:
        raise NotFound(f"no order {order_id!r} in your account")
    return tuple(row)


async def order_text(portal: Portal, user: sessions.User, order_id: str) -> str:
    """The `.cpu` file of one of the user's orders made on the pages."""
    reader = portal.market.db.reader
    row = _order_row(reader, user.id, order_id)
    if row[2] is not None:
        raise MarketError(f"order {order_id} is revoked: make a new one")
    url = accounts.get_setting(reader, "public_url")
    if url is None or not isinstance(row[3], str):
        raise NotFound(f"order {order_id} was not made on these pages: its file is not here")
    nice, memory, cpu = (int(v) for v in row[3].split(","))
    order = SellOrder(
        market_url=url.rstrip("/"),
        order_id=order_id,
        secret=sessions.order_secret(await portal.key(), order_id),
        account=user.name,
        cert_sha256=accounts.get_setting(reader, "cert_sha256"),
        nice=nice,
        max_memory_mb=memory,
        max_cpu_seconds=cpu,
    )
    return render_order(order)


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
    nice = _bounded(form.get("nice"), "nice", 0, 19, 19)
    memory = _bounded(form.get("max_memory_mb"), "memory (MB)", 1, MAX_MEMORY_MB, 256)
    cpu = _bounded(form.get("max_cpu_seconds"), "CPU seconds", 1, MAX_CPU_SECONDS, 60)
    key = await portal.key()

    def issue(conn: Connection) -> str:
        if accounts.get_setting(conn, "public_url") is None:
            raise MarketError(
                "the market's public URL is unknown: its operator starts it with "
                "`livecd market serve --public-url`"
            )
        issued = accounts.create_order(conn, user.name, lambda o: sessions.order_secret(key, o))
        conn.execute(
            "UPDATE orders SET web_terms = ? WHERE id = ?",
            (f"{nice},{memory},{cpu}", issued.order_id),
        )
        return issued.order_id

    await portal.market.db.write(issue)
    return redirect("/account/orders")


async def revoke_order(portal: Portal, request: Request, visitor: Visitor) -> Response:
    user = visitor.need_user()
    await portal.form(request, visitor)
    order_id = request.path_params["order"]
    await portal.market.db.write(lambda c: hosts.revoke_order(c, order_id, user.id))
    portal.market.auth.clear()
    return redirect("/account/orders")


def _attachment(data: bytes, name: str, media_type: str) -> Response:
    return Response(
        data,
        media_type=media_type,
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
        },
    )


async def order_file(portal: Portal, request: Request, visitor: Visitor) -> Response:
    user = visitor.need_user()
    order_id = request.path_params["order"]
    text = await order_text(portal, user, order_id)
    return _attachment(text.encode(), f"{order_id}.cpu", "application/toml")


async def stick_image(portal: Portal, request: Request, visitor: Visitor) -> Response:
    """A small FAT image labelled CPUSHARE holding the order (`market.personal`)."""
    from market.personal import stick_image as build  # type: ignore[import-not-found,import-untyped,unused-ignore]

    user = visitor.need_user()
    order_id = request.path_params["order"]
    text = await order_text(portal, user, order_id)
    data: bytes = await asyncio.to_thread(build, text)
    return _attachment(data, f"cpushare-{order_id}.img", "application/octet-stream")


async def live_cd(portal: Portal, request: Request, visitor: Visitor) -> Response:
    """The market's live CD with the order built in (`market.personal`)."""
    from market.personal import personal_iso  # type: ignore[import-not-found,import-untyped,unused-ignore]

    user = visitor.need_user()
    order_id = request.path_params["order"]
    base = getattr(portal.market.config, "livecd", None)
    if base is None:
        raise NotFound("this market has no live CD to personalise: download the stick image")
    text = await order_text(portal, user, order_id)
    data: bytes = await asyncio.to_thread(personal_iso, base, text)
    return _attachment(data, f"cpushare-{order_id}.iso", "application/x-iso9660-image")


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
