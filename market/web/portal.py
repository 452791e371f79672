"""What every page shares: the templates, who is asking (a signed session cookie), CSRF
checks on every form, and refusals shown as pages rather than JSON."""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from market import keys
from market.errors import Forbidden, MarketError, TooLarge, TooManyRequests
from market.web import sessions
from market.web.figures import LiveFigures
from market.web.limits import LoginLimiter

if TYPE_CHECKING:
    from market.app import Market

TEMPLATES = Path(__file__).parent / "templates"
# Everything a page loads comes from the market itself.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
# A form without files is small; an upload may carry a program and its inputs.
SMALL_FORM = 64 << 10


class SignInFirst(Exception):
    """The page needs a signed-in account: the visitor goes to the sign-in page."""


@dataclass
class Visitor:
    """Who is asking: their session id (new if the cookie was missing or forged) and the
    account signed in with it, if any."""

    session_id: str
    fresh: bool
    user: sessions.User | None
    csrf: str
    # Served over TLS: the cookie is sent back over TLS only.
    secure: bool

    def need_user(self) -> sessions.User:
        if self.user is None:
            raise SignInFirst
        return self.user

    def need_operator(self) -> sessions.User:
        user = self.need_user()
        if not user.operator:
            raise Forbidden("this page is for the market's operators")
        return user


class Portal:
    def __init__(self, market: Market) -> None:
        self.market = market
        self.limiter = LoginLimiter()
        self._figures: LiveFigures | None = None
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self.env.filters["coins"] = lambda m: f"{m / 1000:,.3f}"
        self.env.filters["when"] = _when
        self.env.filters["cpu"] = _cpu
        self._key: bytes | None = None

    def figures(self) -> LiveFigures:
        """The home page's figures (the store exists once the market has started)."""
        if self._figures is None:
            self._figures = LiveFigures(self.market.db.db)
        return self._figures

    async def key(self) -> bytes:
        """The signing key, made on first use and shared through the database."""
        if self._key is None:
            key = keys.load(self.market.db.reader)
            self._key = key if key is not None else await self.market.db.write(keys.ensure)
        return self._key

    async def visitor(self, request: Request) -> Visitor:
        key = await self.key()
        session_id = sessions.unsign(key, request.cookies.get(sessions.COOKIE))
        fresh = session_id is None
        if session_id is None:
            session_id = sessions.new_id()
        user = None if fresh else sessions.user_of(self.market.db.reader, session_id)
        return Visitor(
            session_id,
            fresh,
            user,
            sessions.csrf_token(key, session_id),
            request.url.scheme == "https",
        )

    async def form(self, request: Request, visitor: Visitor, cap: int = SMALL_FORM) -> FormData:
        """The posted form, refused unless it carries this session's CSRF token."""
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap:
            raise TooLarge(f"the form is larger than {cap} bytes")
        form = await request.form(max_files=1001, max_fields=50, max_part_size=cap)
        token = form.get("csrf")
        key = await self.key()
        if (
            visitor.fresh
            or not isinstance(token, str)
            or not sessions.csrf_ok(key, visitor.session_id, token)
        ):
            raise Forbidden(
                "this form is stale or came from another site: reload the page and send it again"
            )
        return form

    def page(
        self, visitor: Visitor, template: str, status: int = 200, **context: Any
    ) -> HTMLResponse:
        html = self.env.get_template(template).render(
            user=visitor.user, csrf=visitor.csrf, **context
        )
        response = HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)
        if visitor.fresh:
            self.set_cookie(response, visitor.session_id, secure=visitor.secure)
        return response

    def set_cookie(self, response: Response, session_id: str, *, secure: bool) -> None:
        assert self._key is not None
        response.set_cookie(
            sessions.COOKIE,
            sessions.sign(self._key, session_id),
            max_age=sessions.SESSION_SECONDS,
            httponly=True,
            samesite="lax",
            secure=secure,
        )


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers=SECURITY_HEADERS)


def _cpu(seconds: float) -> str:
    """CPU time in the unit that shows it best."""
    if seconds < 120:
        return f"{seconds:.2f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:,.1f} h"


def _when(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    ago = time.time() - seconds
    if ago < 90:
        return f"{max(0, round(ago))} s ago"
    if ago < 5400:
        return f"{round(ago / 60)} min ago"
    if ago < 48 * 3600:
        return f"{round(ago / 3600)} h ago"
    return time.strftime("%Y-%m-%d", time.gmtime(seconds))


Handler = Callable[["Portal", Request, Visitor], Awaitable[Response]]


def endpoint(portal: Portal, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """A Starlette endpoint for `handler`, with refusals rendered as the error page."""

    @functools.wraps(handler)
    async def run(request: Request) -> Response:
        visitor = await portal.visitor(request)
        try:
            return await handler(portal, request, visitor)
        except SignInFirst:
            return redirect("/login")
        except MarketError as exc:
            response: Response = portal.page(visitor, "error.html", exc.status, message=str(exc))
            if isinstance(exc, TooManyRequests):
                response.headers["Retry-After"] = str(round(exc.retry_after))
            return response
        except HTTPException as exc:
            return portal.page(visitor, "error.html", exc.status_code, message=str(exc.detail))

    return run
