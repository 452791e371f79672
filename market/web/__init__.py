"""The market's web portal: server-rendered pages on the API's own port (Starlette and
Jinja2; every asset served from market/web/static, nothing from elsewhere).

`routes(market)` is what the app mounts; each page's module says what it shows."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from market.web import account, operator, public, research, volunteer
from market.web.portal import Handler, Portal, endpoint

if TYPE_CHECKING:
    from market.app import Market

STATIC = Path(__file__).parent / "static"

# (path, method, handler): every page and form of the portal.
PAGES: tuple[tuple[str, str, Handler], ...] = (
    ("/", "GET", public.home),
    ("/help", "GET", public.help_page),
    ("/signup", "GET", account.signup_page),
    ("/signup", "POST", account.signup),
    ("/login", "GET", account.login_page),
    ("/login", "POST", account.login),
    ("/logout", "POST", account.logout),
    ("/account", "GET", account.account_page),
    ("/account/password", "GET", account.password_page),
    ("/account/password", "POST", account.change_password),
    ("/account/keys", "POST", account.new_key),
    ("/account/keys/{key:int}/revoke", "POST", account.revoke_key),
    ("/account/leaderboard", "POST", account.leaderboard),
    ("/account/orders", "GET", volunteer.orders_page),
    ("/account/orders", "POST", volunteer.new_order),
    ("/account/orders/{order}/revoke", "POST", volunteer.revoke_order),
    ("/account/orders/{order}/order.cpu", "GET", volunteer.order_file),
    ("/account/orders/{order}/stick.img", "GET", volunteer.stick_image),
    ("/account/orders/{order}/livecd.iso", "GET", volunteer.live_cd),
    ("/account/machines", "GET", volunteer.machines_page),
    ("/account/batches", "GET", research.batches_page),
    ("/account/batches", "POST", research.upload),
    ("/account/batches/{batch:int}", "GET", research.batch_page),
    ("/account/batches/{batch:int}/results.tar", "GET", research.results),
    ("/account/batches/{batch:int}/cancel", "POST", research.cancel),
    ("/operator", "GET", operator.operator_page),
    ("/operator/hosts/{host}/revoke", "POST", operator.revoke_host),
    ("/operator/orders/{order}/revoke", "POST", operator.revoke_order),
    ("/operator/accounts/{name}/disabled", "POST", operator.set_disabled),
    ("/operator/accounts/{name}/grant", "POST", operator.grant),
)


def routes(market: Market) -> list[BaseRoute]:
    """The portal's routes for `market`, with its stylesheet under /static."""
    portal = Portal(market)
    pages: list[BaseRoute] = [
        Route(path, endpoint(portal, handler), methods=[method]) for path, method, handler in PAGES
    ]
    return [*pages, Mount("/static", StaticFiles(directory=STATIC), name="static")]
