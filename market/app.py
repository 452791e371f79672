"""The market's HTTP API (Starlette): routes, authentication, long-poll leasing, errors."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from cpushare import protocol
from cpushare.limits import MAX_PROGRAM_BYTES, JobLimits
from market import access, accounts, agreement, jobs, leasing, openapi, stats
from market.api import (
    Credentials,
    base64_field,
    bounded_int,
    credentials,
    field,
    parse_limits,
    parse_result,
    path_int,
    query_int,
    read_body,
    read_json,
)
from market.deadlines import client_gone
from market.errors import Forbidden, MarketError, Unauthorized
from market.store import Store, StoreFull

log = logging.getLogger("market")

MAX_WAIT_SECONDS = 60.0
# Seen within this many seconds counts as a live seller in the status.
SELLER_SEEN_SECONDS = 600.0
# A seller that names no bounds of its own takes jobs up to the default limits.
DEFAULT = JobLimits()


@dataclass(frozen=True)
class MarketConfig:
    """How the market runs; the defaults suit production, tests shorten the lease."""

    db: Path
    lease_seconds: float = 60.0
    max_body: int = 24 << 20


class Wakeup:
    """Wakes every long-polling seller when work may have appeared."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    def notify(self) -> None:
        self.event.set()
        self.event = asyncio.Event()


def json_response(doc: object, status: int = 200) -> Response:
    return Response(
        json.dumps(doc, separators=(",", ":")).encode(),
        status_code=status,
        media_type="application/json",
    )


class Market:
    """The running market: its store, its waiting sellers, and the request handlers."""

    def __init__(self, config: MarketConfig) -> None:
        self.config = config
        self.store: Store | None = None
        self.wakeup: Wakeup | None = None
        self.sellers_seen: dict[tuple[str, str], float] = {}
        self._accounts: dict[str, int] = {}
        self._orders: dict[tuple[str, str], bool] = {}
        self.public_stats = stats.PublicStats()
        # Built once, and before serving: an undocumented route stops the market at start.
        self.openapi_json = json.dumps(openapi_document(), indent=2).encode()

    @property
    def db(self) -> Store:
        assert self.store is not None, "the market is not started"
        return self.store

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        self.store = Store(self.config.db)
        self.wakeup = Wakeup()
        sweeper = asyncio.create_task(self._sweep_expired_leases())
        try:
            yield
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            self.store.close()

    async def _sweep_expired_leases(self) -> None:
        interval = min(1.0, max(0.1, self.config.lease_seconds / 4))
        while True:
            await asyncio.sleep(interval)
            try:
                expired = await self.db.write(lambda c: leasing.expire_leases(c, time.time()))
            except StoreFull:
                log.warning("cannot expire leases: the disk is full")
                continue
            if expired:
                self._notify()

    def _notify(self) -> None:
        assert self.wakeup is not None
        self.wakeup.notify()

    # Authentication.

    def account(self, request: Request) -> int:
        creds = credentials(request)
        if creds.api_key is None:
            raise Forbidden("this needs an account's API key (Authorization: Bearer KEY)")
        cached = self._accounts.get(creds.api_key)
        if cached is not None:
            return cached
        found = accounts.account_for_key(self.db.reader, creds.api_key)
        if found is None:
            raise Unauthorized("unknown API key")
        self._accounts[creds.api_key] = found
        return found

    def seller(self, request: Request) -> str:
        creds = credentials(request)
        if creds.order_id is None or creds.secret is None:
            raise Forbidden("this needs a sell order's credentials (HTTP Basic ORDER_ID:SECRET)")
        self._check_order(creds)
        return creds.order_id

    def _check_order(self, creds: Credentials) -> None:
        assert creds.order_id is not None and creds.secret is not None
        key = (creds.order_id, creds.secret)
        if key in self._orders:
            return
        if not accounts.order_matches(self.db.reader, *key):
            raise Unauthorized("unknown order or wrong secret")
        self._orders[key] = True

    # Buyers.

    async def upload_program(self, request: Request) -> Response:
        owner = self.account(request)
        program = await read_body(request, MAX_PROGRAM_BYTES)
        sha256 = jobs.check_program(program)
        new = await self.db.write(lambda c: jobs.store_program(c, owner, program, sha256))
        return json_response(
            {"sha256": sha256, "size": len(program), "new": new}, 201 if new else 200
        )

    async def get_program(self, request: Request) -> Response:
        creds = credentials(request)
        account = self.account(request) if creds.api_key is not None else None
        if account is None:
            self._check_order(creds)
        sha256 = request.path_params["sha256"]
        access.check_program_read(self.db.reader, sha256, account=account, order=creds.order_id)
        data = jobs.program_bytes(self.db.reader, sha256)
        return Response(data, media_type="application/octet-stream")

    async def submit(self, request: Request) -> Response:
        owner = self.account(request)
        doc = await read_json(request, self.config.max_body)
        program = field(doc, "program", str)
        replicas = field(doc, "replicas", int, 1)
        raw_inputs = field(doc, "inputs", list)
        limits = parse_limits(field(doc, "limits", dict, {}))
        inputs = [base64_field(item, f"inputs[{i}]") for i, item in enumerate(raw_inputs)]
        jobs.check_batch(inputs, replicas, limits)
        code = jobs.program_bytes(self.db.reader, program)
        jobs.check_program(code, limits)
        ids = await self.db.write(
            lambda c: jobs.submit_jobs(c, owner, program, inputs, limits, replicas)
        )
        self._notify()
        return json_response({"jobs": ids}, 201)

    async def list_jobs(self, request: Request) -> Response:
        owner = self.account(request)
        state = request.query_params.get("state")
        if state not in (None, "open", "done", "failed"):
            raise MarketError("query parameter state must be open, done or failed")
        after = query_int(request, "after", 0, 0, 2**62)
        limit = query_int(request, "limit", 100, 1, 1000)
        return json_response({"jobs": jobs.list_jobs(self.db.reader, owner, state, after, limit)})

    async def job(self, request: Request) -> Response:
        owner = self.account(request)
        return json_response(jobs.job_status(self.db.reader, owner, path_int(request, "job")))

    async def job_output(self, request: Request) -> Response:
        owner = self.account(request)
        data = jobs.job_output(self.db.reader, owner, path_int(request, "job"))
        return Response(data, media_type="application/octet-stream")

    async def status(self, request: Request) -> Response:
        account = self.account(request)
        now = time.time()
        doc = stats.own_status(self.db.reader, account, now)
        mine = stats.own_orders(self.db.reader, account)
        seen = [
            (order, seller)
            for (order, seller), t in self.sellers_seen.items()
            if order in mine and now - t < SELLER_SEEN_SECONDS
        ]
        doc["sellers_seen"] = len(seen)
        doc["orders_seen"] = len({order for order, _ in seen})
        return json_response(doc)

    async def market_stats(self, _request: Request) -> Response:
        return json_response(self.public_stats.get(self.db.reader, time.time()))

    # Sellers.

    async def lease(self, request: Request) -> Response:
        order = self.seller(request)
        doc = await read_json(request, 64 << 10)
        wait = min(max(field(doc, "wait", float, 0.0), 0.0), MAX_WAIT_SECONDS)
        seller = field(doc, "seller", str, "")[:64]
        limits = (
            bounded_int(doc, "max_memory_bytes", DEFAULT.memory_bytes, 0, 1 << 42),
            bounded_int(doc, "max_cpu_seconds", DEFAULT.cpu_seconds, 0, 1 << 30),
        )
        loop = asyncio.get_running_loop()
        give_up = loop.time() + wait
        waited = False
        while True:
            self.sellers_seen[(order, seller)] = time.time()
            assert self.wakeup is not None
            # Taken before looking, so work arriving in between still wakes us.
            wake = self.wakeup.event
            granted = await self._try_lease(order, seller, limits, woken=waited)
            if granted is not None:
                return json_response(
                    protocol.lease_document(
                        granted.id,
                        granted.job_id,
                        granted.program_sha256,
                        granted.program_size,
                        granted.input,
                        granted.limits,
                        self.config.lease_seconds,
                    )
                )
            remaining = give_up - loop.time()
            if remaining <= 0:
                return Response(status_code=204)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), remaining)
            waited = True
            if await request.is_disconnected():
                # A seller that hung up would never see the lease: do not hand it one.
                return Response(status_code=204)

    async def _try_lease(
        self, order: str, seller: str, limits: tuple[int, int], *, woken: bool
    ) -> leasing.Lease | None:
        # Every waiting seller wakes at once: a look on the read connection first keeps
        # all but the lucky ones away from the writer.
        if woken and leasing.ready_job(self.db.reader, order, limits) is None:
            return None
        now = time.time()
        seconds = self.config.lease_seconds
        return await self.db.write(
            lambda c: leasing.grant_lease(c, order, seller, limits, seconds, now)
        )

    async def extend(self, request: Request) -> Response:
        order = self.seller(request)
        lease_id = path_int(request, "lease")
        seconds = self.config.lease_seconds
        await self.db.write(
            lambda c: leasing.extend_lease(c, lease_id, order, seconds, time.time())
        )
        return json_response({"lease": lease_id, "lease_seconds": seconds})

    async def release(self, request: Request) -> Response:
        order = self.seller(request)
        lease_id = path_int(request, "lease")
        await self.db.write(lambda c: leasing.release_lease(c, lease_id, order, time.time()))
        self._notify()
        return json_response({"lease": lease_id, "released": True})

    async def result(self, request: Request) -> Response:
        order = self.seller(request)
        lease_id = path_int(request, "lease")
        doc = await read_json(request, self.config.max_body)
        result = parse_result(doc)
        recorded = await self.db.write(
            lambda c: agreement.record_result(c, lease_id, order, result, time.time())
        )
        if recorded.verdict != "accepted":
            # A disagreeing result may have freed a slot for another replica.
            self._notify()
        return json_response(
            protocol.recorded_document(
                recorded.result_id, recorded.verdict, recorded.millicoins, recorded.duplicate
            )
        )

    # Documents.

    async def openapi(self, _request: Request) -> Response:
        return Response(self.openapi_json, media_type="application/json")

    async def health(self, _request: Request) -> Response:
        return json_response({"ok": True})


async def _market_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, MarketError)
    response = json_response({"error": str(exc)}, exc.status)
    if exc.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer, Basic realm="cpushare"'
    return response


async def _http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return json_response({"error": str(exc.detail)}, exc.status_code)


async def _store_full(_request: Request, exc: Exception) -> Response:
    log.error("%s", exc)
    return json_response({"error": f"{exc}; nothing of this request was kept"}, 507)


async def _internal_error(_request: Request, exc: Exception) -> Response:
    log.exception("internal error", exc_info=exc)
    return json_response({"error": "internal error: the market logged it"}, 500)


# (path, method, Market's handler): the app's routes and the paths of its OpenAPI document.
ROUTES = (
    ("/v1/health", "GET", "health"),
    ("/v1/openapi.json", "GET", "openapi"),
    ("/v1/status", "GET", "status"),
    ("/v1/stats", "GET", "market_stats"),
    ("/v1/programs", "PUT", "upload_program"),
    ("/v1/programs/{sha256}", "GET", "get_program"),
    ("/v1/jobs", "POST", "submit"),
    ("/v1/jobs", "GET", "list_jobs"),
    ("/v1/jobs/{job}", "GET", "job"),
    ("/v1/jobs/{job}/output", "GET", "job_output"),
    ("/v1/lease", "POST", "lease"),
    ("/v1/leases/{lease}/extend", "POST", "extend"),
    ("/v1/leases/{lease}/release", "POST", "release"),
    ("/v1/leases/{lease}/result", "POST", "result"),
)


def openapi_document() -> dict[str, Any]:
    """The API document of this app."""
    return openapi.document(
        [(path, method) for path, method, _ in ROUTES],
        (DEFAULT.memory_bytes, DEFAULT.cpu_seconds),
        MAX_WAIT_SECONDS,
    )


def create_app(config: MarketConfig) -> Starlette:
    """The market as an ASGI application."""
    market = Market(config)
    routes = [Route(path, getattr(market, name), methods=[method]) for path, method, name in ROUTES]
    return Starlette(
        routes=routes,
        lifespan=market.lifespan,
        exception_handlers={
            MarketError: _market_error,
            ClientDisconnect: client_gone,
            HTTPException: _http_error,
            StoreFull: _store_full,
            Exception: _internal_error,
        },
    )
