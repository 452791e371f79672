"""The market's download routes: a volunteer's new order as a `.cpu` file, the same order
as a CPUSHARE stick image or a personal live CD (`market.personal`), and the public
statistics export (`market.export`). Handlers of `market.app.ROUTES` (as `downloads.NAME`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from market import export, personal
from market.api import read_json
from market.store import Store

TOML = "application/toml"
ISO = "application/x-iso9660-image"


def _attachment(name: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"}


def cpu_response(name: str, text: str, status: int = 200) -> Response:
    """An order's `.cpu` file as a download."""
    return Response(text.encode(), status, _attachment(name), media_type=TOML)


def stick_response(name: str, text: str) -> Response:
    """The order on a CPUSHARE stick image."""
    image = personal.stick_image(text, name)
    headers = _attachment(f"cpushare-{name.removesuffix('.cpu')}-stick.img")
    return Response(image, headers=headers, media_type="application/octet-stream")


def iso_response(base: Path | None, name: str, text: str) -> Response:
    """The base live CD carrying the order, streamed."""
    iso = personal.personal_iso(base, text, name)
    headers = {
        **_attachment(f"cpushare-{name.removesuffix('.cpu')}.iso"),
        "Content-Length": str(iso.size),
    }
    return StreamingResponse(iso.chunks(), headers=headers, media_type=ISO)


class Downloads:
    """The handlers, given the market's store, its account check and its base ISO."""

    def __init__(
        self, db: Callable[[], Store], account: Callable[[Request], int], livecd: Path | None
    ) -> None:
        self._db = db
        self._account = account
        self.livecd = livecd
        self.export = export.Export()

    async def create_order(self, request: Request) -> Response:
        owner = self._account(request)
        terms = personal.check_terms(await read_json(request, 64 << 10))
        order_id, text = await self._db().write(lambda c: personal.create_order(c, owner, terms))
        response = cpu_response(f"{order_id}.cpu", text, 201)
        response.headers["Location"] = f"/v1/orders/{order_id}"
        return response

    def _order(self, request: Request) -> tuple[str, str]:
        owner = self._account(request)
        return personal.order_file(self._db().reader, owner, request.path_params["order"])

    async def livecd_iso(self, request: Request) -> Response:
        return iso_response(self.livecd, *self._order(request))

    async def stick_img(self, request: Request) -> Response:
        return stick_response(*self._order(request))

    async def export_file(self, request: Request) -> Response:
        name = request.url.path.rsplit("/", 1)[-1]
        data = self.export.get(self._db().reader, name, time.time())
        return Response(data, media_type=export.FILES[name])
