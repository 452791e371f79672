"""The API's routes dispatched straight from ASGI, before Starlette's router and middleware.

A request whose method and path match a route of the API (`market.app.ROUTES`) goes to
its handler at once, its refusals answered by the same exception handlers: no scan of
every route's regular expression, and no middleware wrapping `send` and `receive` in
closures (three layers of them, for every request; a seller's lease and result requests
are nearly all of the market's traffic). Anything else (the web portal, static files,
HEAD, an unknown path or method) goes to Starlette, which holds the API's routes too and
answers it as before.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

Handler = Callable[[Request], Awaitable[Response]]
ErrorHandler = Callable[[Request, Exception], Awaitable[Response]]
# A route's path cut at its slashes: a literal segment, or None where a parameter goes.
Template = tuple[tuple[str | None, ...], tuple[str, ...], Handler]


class ApiRoutes:
    """Exact matching of (method, path) against path templates whose parameters are whole
    segments (`/v1/leases/{lease}/result`), in the order given, as Starlette's default
    `str` convertor matches them: any text but a slash, at least one character."""

    def __init__(self, routes: Iterable[tuple[str, str, Handler]]) -> None:
        self._templates: dict[tuple[str, int], list[Template]] = {}
        for path, method, handler in routes:
            parts = path.split("/")
            names = tuple(p[1:-1] for p in parts if p.startswith("{"))
            if any(":" in name or not name.isidentifier() for name in names):
                raise ValueError(f"route {path}: only plain {{name}} parameters are dispatched")
            literal = tuple(None if p.startswith("{") else p for p in parts)
            self._templates.setdefault((method, len(parts)), []).append((literal, names, handler))

    def match(self, method: str, path: str) -> tuple[Handler, dict[str, str]] | None:
        """The handler of the first route matching, with its path parameters; or None."""
        parts = path.split("/")
        for literal, names, handler in self._templates.get((method, len(parts)), ()):
            values = []
            for want, got in zip(literal, parts, strict=True):
                if want is None:
                    if not got:
                        break
                    values.append(got)
                elif want != got:
                    break
            else:
                return handler, dict(zip(names, values, strict=True))
        return None


class MarketApp(Starlette):
    """Starlette, with the API's routes dispatched first (`ApiRoutes`). `refusals` are the
    exception handlers of the API's errors; any other exception is answered by
    `internal`, then raised again for the server to log, as Starlette does."""

    def __init__(
        self,
        api: ApiRoutes,
        refusals: Mapping[type[Exception], ErrorHandler],
        internal: ErrorHandler,
        **starlette: Any,
    ) -> None:
        handlers: dict[Any, ErrorHandler] = {**refusals, Exception: internal}
        super().__init__(exception_handlers=handlers, **starlette)
        self.api = api
        self._refusals = dict(refusals)
        self._internal = internal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            found = self.api.match(scope["method"], scope["path"])
            if found is not None:
                scope["app"] = self
                scope["path_params"] = found[1]
                await self._serve(found[0], scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    async def _serve(self, handler: Handler, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            response = await handler(request)
        except Exception as exc:
            refuse = self._refusal(exc)
            if refuse is None:
                await (await self._internal(request, exc))(scope, receive, send)
                raise
            response = await refuse(request, exc)
            # A reused exception instance would accumulate tracebacks across requests.
            exc.__traceback__ = None
        await response(scope, receive, send)

    def _refusal(self, exc: Exception) -> ErrorHandler | None:
        for cls in type(exc).__mro__:
            refuse = self._refusals.get(cls)
            if refuse is not None:
                return refuse
        return None
