"""Accounts on the pages: sign up, sign in and out, change the password; the account's
page with its coins, its API keys (made and revoked here) and the leaderboard opt-in."""

from __future__ import annotations

import asyncio
import time

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from market import accounts, stats
from market.dialect import Connection
from market.errors import MarketError, Unauthorized
from market.web import passwords, sessions
from market.web.portal import Portal, Visitor, redirect

LABEL_LENGTH = 60


def text(form: FormData, name: str, what: str, limit: int = 200) -> str:
    """A form's text field, present and at most `limit` characters."""
    value = form.get(name)
    if not isinstance(value, str) or not value.strip():
        raise MarketError(f"{what} is missing: fill it in and send the form again")
    if len(value) > limit:
        raise MarketError(f"{what} is longer than {limit} characters")
    return value.strip()


async def sign_in(portal: Portal, visitor: Visitor, account: int, to: str) -> Response:
    """A new session id for the account, replacing whatever the browser had."""
    session_id = sessions.new_id()
    now = time.time()
    if not visitor.fresh:
        await portal.market.db.write(lambda c: sessions.end(c, visitor.session_id))
    await portal.market.db.write(lambda c: sessions.start(c, session_id, account, now))
    response = redirect(to)
    portal.set_cookie(response, session_id, secure=visitor.secure)
    return response


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def signup_page(portal: Portal, _request: Request, visitor: Visitor) -> Response:
    return portal.page(visitor, "signup.html", min_length=passwords.MIN_LENGTH)


async def signup(portal: Portal, request: Request, visitor: Visitor) -> Response:
    form = await portal.form(request, visitor)
    # Sign-ups are limited per address as sign-ins are: accounts cannot be made in bulk.
    portal.limiter.take(f"signup:{_address(request)}")
    name = text(form, "name", "the account name", 64)
    password = text(form, "password", "the password", passwords.MAX_LENGTH)
    if password != form.get("confirm"):
        raise MarketError("the two passwords differ: type the same one twice")
    passwords.check_new(password)
    hashed = await asyncio.to_thread(passwords.hash_password, password)

    def create(conn: Connection) -> int:
        issued = accounts.create_account(conn, name)
        conn.execute("UPDATE accounts SET password_hash = ? WHERE id = ?", (hashed, issued.id))
        return issued.id

    account = await portal.market.db.write(create)
    return await sign_in(portal, visitor, account, "/account")


async def login_page(portal: Portal, _request: Request, visitor: Visitor) -> Response:
    return portal.page(visitor, "login.html")


async def login(portal: Portal, request: Request, visitor: Visitor) -> Response:
    form = await portal.form(request, visitor)
    name = text(form, "name", "the account name", 64)
    password = text(form, "password", "the password", passwords.MAX_LENGTH)
    portal.limiter.take(f"account:{name}", f"address:{_address(request)}")
    row = portal.market.db.reader.execute(
        "SELECT id, password_hash, disabled FROM accounts WHERE name = ?", (name,)
    ).fetchone()
    stored = None if row is None else row[1]
    if not await asyncio.to_thread(passwords.verify, password, stored):
        raise Unauthorized("wrong account name or password")
    if row[2] is not None:
        raise Unauthorized("this account is disabled: ask the market's operator")
    return await sign_in(portal, visitor, int(row[0]), "/account")


async def logout(portal: Portal, request: Request, visitor: Visitor) -> Response:
    await portal.form(request, visitor)
    await portal.market.db.write(lambda c: sessions.end(c, visitor.session_id))
    response = redirect("/")
    portal.set_cookie(response, sessions.new_id(), secure=visitor.secure)
    return response


async def password_page(portal: Portal, _request: Request, visitor: Visitor) -> Response:
    visitor.need_user()
    return portal.page(visitor, "password.html", min_length=passwords.MIN_LENGTH)


async def change_password(portal: Portal, request: Request, visitor: Visitor) -> Response:
    user = visitor.need_user()
    form = await portal.form(request, visitor)
    old = text(form, "old", "the current password", passwords.MAX_LENGTH)
    new = text(form, "new", "the new password", passwords.MAX_LENGTH)
    if new != form.get("confirm"):
        raise MarketError("the two new passwords differ: type the same one twice")
    passwords.check_new(new)
    portal.limiter.take(f"account:{user.name}")
    (stored,) = portal.market.db.reader.execute(
        "SELECT password_hash FROM accounts WHERE id = ?", (user.id,)
    ).fetchone()
    if not await asyncio.to_thread(passwords.verify, old, stored):
        raise Unauthorized("the current password is wrong")
    hashed = await asyncio.to_thread(passwords.hash_password, new)

    def change(conn: Connection) -> None:
        conn.execute("UPDATE accounts SET password_hash = ? WHERE id = ?", (hashed, user.id))
        # Every other browser signed in with the old password is signed out.
        sessions.end_all(conn, user.id)

    await portal.market.db.write(change)
    return await sign_in(portal, visitor, user.id, "/account")


def _coins(conn: Connection, account: int) -> dict[str, int]:
    """Millicoins: the balance, held for open jobs, spent on jobs, earned by selling."""
    (balance,) = conn.execute("SELECT millicoins FROM accounts WHERE id = ?", (account,)).fetchone()
    (held,) = conn.execute(
        "SELECT coalesce(sum(reserved), 0) FROM jobs WHERE account_id = ?", (account,)
    ).fetchone()
    (spent,) = conn.execute(
        "SELECT coalesce(sum(t.millicoins), 0) FROM transfers t JOIN results r "
        "ON r.id = t.result_id JOIN jobs j ON j.id = r.job_id "
        "WHERE t.kind = 'pay' AND j.account_id = ?",
        (account,),
    ).fetchone()
    (earned,) = conn.execute(
        "SELECT coalesce(sum(millicoins), 0) FROM transfers WHERE kind = 'pay' AND target = ?",
        (f"a:{account}",),
    ).fetchone()
    return {"balance": balance, "held": held, "spent": spent, "earned": earned}


async def account_page(
    portal: Portal, _request: Request, visitor: Visitor, new_key: str | None = None
) -> Response:
    user = visitor.need_user()
    reader = portal.market.db.reader
    keys = reader.execute(
        "SELECT id, label, created FROM api_keys WHERE account_id = ? AND revoked IS NULL "
        "ORDER BY id",
        (user.id,),
    ).fetchall()
    on_board = accounts.get_setting(reader, "leaderboard:" + user.name) == "on"
    return portal.page(
        visitor,
        "account.html",
        coins=_coins(reader, user.id),
        keys=keys,
        new_key=new_key,
        on_board=on_board,
    )


async def new_key(portal: Portal, request: Request, visitor: Visitor) -> Response:
    user = visitor.need_user()
    form = await portal.form(request, visitor)
    label = text(form, "label", "the key's label", LABEL_LENGTH)
    key = await portal.market.db.write(lambda c: accounts.create_api_key(c, user.id, label))
    return await account_page(portal, request, visitor, new_key=key)


async def revoke_key(portal: Portal, request: Request, visitor: Visitor) -> Response:
    user = visitor.need_user()
    await portal.form(request, visitor)
    key_id: int = request.path_params["key"]
    await portal.market.db.write(lambda c: accounts.revoke_api_key(c, user.id, key_id))
    portal.market.auth.clear()
    return redirect("/account")


async def leaderboard(portal: Portal, request: Request, visitor: Visitor) -> Response:
    user = visitor.need_user()
    form = await portal.form(request, visitor)
    on = form.get("show") == "on"
    await portal.market.db.write(lambda c: stats.set_leaderboard(c, user.name, on))
    return redirect("/account")
