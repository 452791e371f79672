"""The pages anyone may read: the home page's live figures and leaderboard, how to help."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import Response

from market import stats
from market.web.portal import Portal, Visitor


def _machines_seen(portal: Portal, now: float) -> int:
    """Hosts with a seller that asked this instance for work lately (a machine runs a
    seller per CPU: each is a seat of its host)."""
    seen = list(portal.market.seats_seen.items())
    return len({host for (host, _), (_, at) in seen if now - at < stats.SELLER_SEEN_SECONDS})


async def home(portal: Portal, _request: Request, visitor: Visitor) -> Response:
    now = time.time()
    figures = await portal.figures().get(now, lambda: _machines_seen(portal, now))
    return portal.page(visitor, "home.html", figures=figures)


async def help_page(portal: Portal, _request: Request, visitor: Visitor) -> Response:
    return portal.page(visitor, "help.html", leaderboard_size=stats.LEADERBOARD_SIZE)
