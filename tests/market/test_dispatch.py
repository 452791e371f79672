"""The API's direct dispatch (market.dispatch) picks what Starlette's router would, and
leaves to Starlette what it does not pick."""

from __future__ import annotations

from pathlib import Path

import requests
from starlette.routing import Match, Route

from livecd.market_process import MarketProcess
from market.app import ROUTES, MarketConfig, create_app
from market.dispatch import ApiRoutes, MarketApp

METHODS = ("GET", "POST", "PUT", "DELETE", "HEAD")


def _probes(template: str) -> list[str]:
    """Paths near a route's template: its parameters filled in several ways, cut short,
    lengthened, with a trailing slash, and with a literal changed."""
    fills = ["7", "host-ab12", "a.b", "x y", "%41", ""]
    paths = [template.replace("{", "").replace("}", "")]
    for fill in fills:
        parts = [fill if p.startswith("{") else p for p in template.split("/")]
        path = "/".join(parts)
        paths += [path, path + "/", path + "/x", path.rsplit("/", 1)[0], path.upper()]
    return paths


def test_the_dispatch_matches_as_starlettes_router_or_steps_aside() -> None:
    app = create_app(MarketConfig(db=Path("unused.db")))
    assert isinstance(app, MarketApp)
    routes = [r for r in app.routes if isinstance(r, Route)]
    probes = {p for path, _, _ in ROUTES for p in _probes(path)} | {"/", "/v1", "/v1/", "//v1"}
    dispatched = 0
    for path in sorted(probes):
        for method in METHODS:
            scope = {"type": "http", "method": method, "path": path, "root_path": ""}
            full = [
                (r, child) for r in routes for m, child in [r.matches(scope)] if m is Match.FULL
            ]
            found = app.api.match(method, path)
            if found is None:
                continue  # Starlette answers it, as before
            dispatched += 1
            route, child = full[0]
            assert found == (route.endpoint, child["path_params"]), (method, path)
    # Every route of the API is dispatched directly when asked with its own method.
    for path, method, _ in ROUTES:
        concrete = path.replace("{", "").replace("}", "")
        assert app.api.match(method, concrete) is not None, (method, path)
    assert dispatched >= len(ROUTES)


def test_routes_with_converters_are_refused() -> None:
    async def handler(_request: object) -> object:
        raise AssertionError

    try:
        ApiRoutes([("/v1/jobs/{job:int}", "GET", handler)])  # type: ignore[list-item]
    except ValueError as exc:
        assert "{name}" in str(exc)
    else:
        raise AssertionError("a converter was accepted")


def test_what_the_dispatch_leaves_is_answered_by_starlette(market: MarketProcess) -> None:
    url = market.url
    # HEAD, a wrong method, a trailing slash: Starlette's router, as before.
    assert requests.head(f"{url}/v1/health", timeout=5).status_code == 200
    wrong = requests.post(f"{url}/v1/health", timeout=5)
    assert wrong.status_code == 405 and wrong.json() == {"error": "Method Not Allowed"}
    assert requests.get(f"{url}/v1/lease", timeout=5).status_code == 405
    assert requests.get(f"{url}/v1/nothing", timeout=5).status_code == 404
    # The dispatched routes answer, and refuse with the app's own exception handlers.
    assert requests.get(f"{url}/v1/health", timeout=5).json() == {"ok": True}
    refused = requests.post(f"{url}/v1/lease", json={"seat": 0}, timeout=5)
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"] == 'Bearer, Basic realm="cpushare"'
    assert refused.headers["content-type"] == "application/json"
    bad = requests.post(f"{url}/v1/leases/1/result", data=b"{", auth=("host-x", "y"), timeout=5)
    assert bad.status_code == 401
    unknown = requests.get(f"{url}/v1/jobs/x", headers={"Authorization": "Bearer k"}, timeout=5)
    assert unknown.status_code == 401
