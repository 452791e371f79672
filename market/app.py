"""The market's HTTP API (Starlette): routes, authentication, long-poll leasing, errors."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import operator
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
from market import (
    access,
    agreement,
    documents,
    export,
    hosts,
    jobs,
    leasing,
    openapi,
    posting,
    stats,
    web,
)
from market.api import (
    base64_field,
    blob_outputs,
    bounded_int,
    credentials,
    field,
    parse_limits,
    parse_result,
    path_int,
    query_int,
    read_body,
    read_document,
    read_json,
)
from market.auth import Authenticator
from market.deadlines import client_gone
from market.dialect import Location
from market.dispatch import ApiRoutes, MarketApp
from market.downloads import Downloads
from market.errors import MarketError, Unavailable
from market.gather import Gather
from market.responses import (
    BlobsReply,
    JSONReply,
    accepts_blobs,
    encode,
    http_error,
    internal_error,
    json_response,
    market_error,
    store_full,
)
from market.store import Store, StoreFull, connect

log = logging.getLogger("market")

MAX_WAIT_SECONDS = 60.0
# Seats remembered as seen at most; older entries are dropped past this.
MAX_SEATS_SEEN = 100_000
# A seller that names no bounds of its own takes jobs up to the default limits.
DEFAULT = JobLimits()


@dataclass(frozen=True)
class MarketConfig:
    """How the market runs; the defaults suit production, tests shorten the lease."""

    db: Location
    lease_seconds: float = 60.0
    max_body: int = 24 << 20
    livecd: Path | None = None  # the base ISO of personal CDs; None: none are served


class Wakeup:
    """Wakes every long-polling seller when work may have appeared."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    def notify(self) -> None:
        self.event.set()
        self.event = asyncio.Event()


class Market:
    """The running market: its store, its waiting sellers, and the request handlers."""

    def __init__(self, config: MarketConfig) -> None:
        self.config = config
        self.store: Store | None = None
        self.wakeup: Wakeup | None = None
        # (host, seat) -> (order, last seen): keyed by market-issued host ids, and pruned.
        self.seats_seen: dict[tuple[str, int], tuple[str, float]] = {}
        self.auth = Authenticator(lambda: self.db.reader, lambda: connect(config.db))
        # Results posted together, and the leases asked for beside them, recorded by one
        # operation (market.gather, market.posting).
        self.posted: Gather[posting.Item, posting.Answer] = Gather(self._record_posted)
        self.public_stats = stats.PublicStats()
        self.downloads = Downloads(lambda: self.db, self.account, config.livecd)
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
        listener = asyncio.create_task(self.store.listen(self.wakeup.notify))
        try:
            yield
        finally:
            for task in (sweeper, listener):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            self.auth.close()
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
            except Unavailable:
                log.warning("cannot expire leases: the database is unavailable")
                continue
            if expired:
                self.notify()

    def notify(self) -> None:
        """Jobs or leases changed: wake the sellers long-polling here and on every other
        instance sharing the database."""
        assert self.wakeup is not None
        self.wakeup.notify()
        self.db.announce()

    def revoked(self) -> None:
        """A host, order, account or key was revoked or disabled: refused from the next
        request on (not once cached credentials expire), its leases offered again at once."""
        self.auth.clear()
        self.notify()

    # Authentication.

    def account(self, request: Request) -> int:
        return self.auth.account(credentials(request))

    def seller(self, request: Request) -> hosts.Host:
        return self.auth.host(credentials(request))

    def _seen(self, host: hosts.Host, seats: list[int]) -> None:
        now = time.time()
        if len(self.seats_seen) + len(seats) > MAX_SEATS_SEEN:
            old = now - stats.SELLER_SEEN_SECONDS
            self.seats_seen = {k: v for k, v in self.seats_seen.items() if v[1] >= old}
            if len(self.seats_seen) + len(seats) > MAX_SEATS_SEEN:
                self.seats_seen.clear()
        seen = (host.order_id, now)
        for seat in seats:
            self.seats_seen[(host.id, seat)] = seen

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
        account = self.auth.account(creds) if creds.api_key is not None else None
        host = None if account is not None else self.auth.host(creds).id
        sha256 = request.path_params["sha256"]
        access.check_program_read(self.db.reader, sha256, account=account, host=host)
        data = jobs.program_bytes(self.db.reader, sha256)
        return Response(data, media_type="application/octet-stream")

    async def submit(self, request: Request) -> Response:
        owner = self.account(request)
        doc = await read_json(request, self.config.max_body)
        program = field(doc, "program", str)
        # No replicas: adaptive replication; k: k agreeing hosts, always (1: trust all).
        replicas = None if doc.get("replicas") is None else field(doc, "replicas", int)
        raw_inputs = field(doc, "inputs", list)
        limits = parse_limits(field(doc, "limits", dict, {}))
        inputs = [base64_field(item, f"inputs[{i}]") for i, item in enumerate(raw_inputs)]
        jobs.check_batch(inputs, replicas, limits)
        # Running a program is reading it: only its owners may (another's is "no program").
        access.check_program_read(self.db.reader, program, account=owner, host=None)
        code = jobs.program_bytes(self.db.reader, program)
        jobs.check_program(code, limits)
        ids = await self.db.write(
            lambda c: jobs.submit_jobs(c, owner, program, inputs, limits, replicas)
        )
        self.notify()
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
        # A machine asks on many seats (the live CD's sellers keep several jobs leased
        # each): its seats, the machines and their orders are told apart.
        seen = [
            (host, o)
            for (host, _), (o, t) in self.seats_seen.items()
            if o in mine and now - t < stats.SELLER_SEEN_SECONDS
        ]
        doc["seats_seen"] = len(seen)
        doc["machines_seen"] = len({host for host, _ in seen})
        doc["orders_seen"] = len({o for _, o in seen})
        return json_response(doc)

    # Buyers' and sellers' own revocations, and cancelling.

    async def cancel(self, request: Request) -> Response:
        owner = self.account(request)
        job_id = path_int(request, "job")
        await self.db.write(lambda c: agreement.cancel(c, owner, job_id, time.time()))
        return json_response({"job": job_id, "cancelled": True})

    async def revoke_host(self, request: Request) -> Response:
        owner = self.account(request)
        host_id = request.path_params["host"]
        await self.db.write(lambda c: hosts.revoke_host(c, host_id, owner))
        self.revoked()
        return json_response({"host": host_id, "revoked": True})

    async def revoke_order(self, request: Request) -> Response:
        owner = self.account(request)
        order_id = request.path_params["order"]
        await self.db.write(lambda c: hosts.revoke_order(c, order_id, owner))
        self.revoked()
        return json_response({"order": order_id, "revoked": True})

    async def market_stats(self, _request: Request) -> Response:
        return json_response(self.public_stats.get(self.db.reader, time.time()))

    # Sellers.

    async def enroll(self, request: Request) -> Response:
        creds = credentials(request)
        if creds.host_id is not None:
            raise MarketError("enroll with the order's credentials, not a host's")
        order = self.auth.order(creds)
        doc = await read_json(request, 64 << 10)
        seats = bounded_int(doc, "seats", 1, 1, protocol.MAX_SEATS)
        network = hosts.network_of(request.client.host if request.client else "")
        self.auth.enrollments.take(network)
        enrolled = await self.db.write(lambda c: hosts.enroll(c, order, seats, network))
        doc = {"host": enrolled.host_id, "secret": enrolled.secret, "seats": seats, "order": order}
        return json_response(doc, 201)

    async def lease(self, request: Request) -> Response:
        host = self.seller(request)
        doc = await read_json(request, 64 << 10)
        seat = bounded_int(doc, "seat", 0, 0, protocol.MAX_SEATS - 1)
        leasing.check_seats(host, [seat])
        granted = await self._long_poll(request, host, [seat], doc)
        if not granted:
            return Response(status_code=204)
        return JSONReply(documents.lease_json(granted[0], self.config.lease_seconds), 200)

    async def leases(self, request: Request) -> Response:
        """A lease for each of several seats in one request (long-polls for the first)."""
        host = self.seller(request)
        doc = await read_json(request, 64 << 10)
        granted = await self._long_poll(request, host, _seats(host, doc), doc)
        if not granted:
            return Response(status_code=204)
        if accepts_blobs(request):
            head = documents.leases_head(granted, self.config.lease_seconds)
            return BlobsReply(head, documents.leases_blobs(granted))
        return JSONReply(documents.leases_json(granted, self.config.lease_seconds), 200)

    async def _long_poll(
        self, request: Request, host: hosts.Host, seats: list[int], doc: dict[str, Any]
    ) -> list[leasing.Lease]:
        """Leases for `seats`, waiting up to the request's `wait` for the first job."""
        wait = min(max(field(doc, "wait", float, 0.0), 0.0), MAX_WAIT_SECONDS)
        limits = _fit(doc)
        loop = asyncio.get_running_loop()
        give_up = loop.time() + wait
        waited = False
        while True:
            self._seen(host, seats)
            assert self.wakeup is not None
            # Taken before looking, so work arriving in between still wakes us.
            wake = self.wakeup.event
            granted = await self._try_lease(host, seats, limits, woken=waited)
            remaining = give_up - loop.time()
            if granted or remaining <= 0:
                return granted
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), remaining)
            waited = True
            # A host revoked meanwhile gets no lease (the cache outlives it by 1 s at most).
            host = self.seller(request)
            if await request.is_disconnected():
                # A seller that hung up would never see the lease: do not hand it one.
                return []

    async def _try_lease(
        self, host: hosts.Host, seats: list[int], limits: leasing.Fit, *, woken: bool
    ) -> list[leasing.Lease]:
        # Every waiting seller wakes at once: a look on the read connection first keeps
        # all but the lucky ones away from the writer.
        if woken and leasing.ready_job(self.db.reader, host.network, limits) is None:
            return []
        # With the asks and results other sellers send meanwhile: one operation of the
        # writer, whose asks are granted together (market.posting, market.grants).
        granted = await self.posted.submit(posting.NextLeases(host, seats, limits, [], []))
        if not isinstance(granted, list):
            raise _unexpected(granted)
        return granted

    async def extend(self, request: Request) -> Response:
        host = self.seller(request)
        lease_id = path_int(request, "lease")
        seconds = self.config.lease_seconds
        await self.db.write(
            lambda c: leasing.extend_lease(c, lease_id, host.id, seconds, time.time())
        )
        return json_response({"lease": lease_id, "lease_seconds": seconds})

    async def release(self, request: Request) -> Response:
        host = self.seller(request)
        lease_id = path_int(request, "lease")
        await self.db.write(lambda c: leasing.release_lease(c, lease_id, host.id, time.time()))
        self.notify()
        return json_response({"lease": lease_id, "released": True})

    async def result(self, request: Request) -> Response:
        host = self.seller(request)
        lease_id = path_int(request, "lease")
        doc = await read_json(request, self.config.max_body)
        result = parse_result(doc)
        recorded = await self.posted.submit((host.id, lease_id, result))
        assert isinstance(recorded, agreement.Recorded)
        if recorded.verdict != "accepted":
            # A disagreeing result may have freed a slot for another replica.
            self.notify()
        return json_response(
            protocol.recorded_document(
                recorded.result_id, recorded.verdict, recorded.millicoins, recorded.duplicate
            )
        )

    async def _record_posted(self, posted: list[posting.Item]) -> list[posting.Answer | Exception]:
        seconds = self.config.lease_seconds
        recorded = await self.db.write(
            lambda c: posting.record_and_lease(c, posted, time.time(), seconds)
        )
        return list(recorded)

    async def results(self, request: Request) -> Response:
        """Several leases' results in one request, recorded in one operation of the store
        with those other sellers post meanwhile (market.gather) and each answered as its
        single post would be."""
        host = self.seller(request)
        doc, tail = await read_document(request, self.config.max_body)
        items = field(doc, "results", list)
        ahead = doc.get("next")
        if not 1 <= len(items) <= protocol.MAX_SEATS:
            raise MarketError(f"field 'results' must hold 1 to {protocol.MAX_SEATS} results")
        outputs = [None] * len(items) if tail is None else blob_outputs(items, tail)
        # Each item's answer, encoded (None: its result's, once recorded), and the leases
        # of the results refused before recording.
        answers: list[bytes | None] = []
        refused: list[object] = []
        valid: list[tuple[str, int, agreement.ResultIn]] = []
        for item, output in zip(items, outputs, strict=True):
            lease_id = item.get("lease") if type(item) is dict else None
            try:
                if type(item) is not dict:
                    raise MarketError("each result must be a JSON object")
                if type(lease_id) is not int or not 1 <= lease_id <= protocol.MAX_ID:
                    raise MarketError("field 'lease' must be a lease id")
                valid.append((host.id, lease_id, parse_result(item, output)))
                answers.append(None)
            except MarketError as exc:
                answers.append(encode({"lease": lease_id, "status": exc.status, "error": str(exc)}))
                refused.append(lease_id)
        posted = [lease_id for _, lease_id, _ in valid]
        following, ask = self._ask_next(host, ahead, posted, refused)
        notify = False
        outcomes: list[posting.Answer | Exception] = []
        if valid or ask is not None:
            # With the results other sellers post meanwhile, and the leases asked for beside
            # them: one operation for all of them (market.posting).
            asked: list[posting.Item] = [*valid, *([] if ask is None else [ask])]
            try:
                outcomes = await self.posted.submit_all(asked)
            except StoreFull as exc:
                outcomes = [exc] * len(asked)
        next_outcome = outcomes.pop() if ask is not None else None
        pending = iter(zip(valid, outcomes, strict=True))
        for place, answer in enumerate(answers):
            if answer is not None:
                continue
            (_, lease_id, _), outcome = next(pending)
            if isinstance(outcome, agreement.Recorded):
                answers[place] = documents.recorded_json(lease_id, outcome)
                # A disagreeing result may have freed a slot for a replica.
                notify = notify or outcome.verdict != "accepted"
            elif isinstance(outcome, MarketError | StoreFull):
                answers[place] = encode({"lease": lease_id, **_refusal(outcome)})
            else:
                raise _unexpected(outcome)
        if notify:
            self.notify()
        listed = b"[%s]" % b",".join(answers)  # type: ignore[arg-type]  # all filled in
        if ahead is None:
            return JSONReply(b'{"results":%s}' % listed, 200)
        blobs = accepts_blobs(request)
        inputs: list[bytes] = []
        if next_outcome is not None:
            following, inputs = self._following(next_outcome, blobs)
        head = b'{"results":%s,"next":%s}' % (listed, following)
        return BlobsReply(head, inputs) if blobs else JSONReply(head, 200)

    def _ask_next(
        self, host: hosts.Host, doc: object, posted: list[int], refused: list[object]
    ) -> tuple[bytes, posting.NextLeases | None]:
        """The leases asked for beside a batch of results (its `next`: a lease batch without
        the wait), to be taken in the results' operation (market.posting), or, when there is
        none or it is refused on its own (the results stand), the answer, encoded
        (`{"status", "error"}` for a refusal). `posted`: the leases of the results recorded
        in that operation; `refused`: those of the results refused before recording, whose
        seats keep their leases."""
        if doc is None:
            return b"", None
        try:
            if not isinstance(doc, dict):
                raise MarketError("field 'next' must be a lease request (an object)")
            seats = _seats(host, doc)
            limits = _fit(doc)
        except MarketError as exc:
            return encode({"status": exc.status, "error": str(exc)}), None
        self._seen(host, seats)
        unacknowledged = [
            lease for lease in refused if type(lease) is int and 1 <= lease <= protocol.MAX_ID
        ]
        return b"", posting.NextLeases(host, seats, limits, posted, unacknowledged)

    def _following(
        self, outcome: posting.Answer | Exception, blobs: bool
    ) -> tuple[bytes, list[bytes]]:
        """The `next` of a reply: the leases granted, or why none were, encoded; with
        `blobs`, as a protocol.BLOBS document, its leases' inputs beside it."""
        if isinstance(outcome, list):
            seconds = self.config.lease_seconds
            if blobs:
                return documents.leases_head(outcome, seconds), documents.leases_blobs(outcome)
            return documents.leases_json(outcome, seconds), []
        if isinstance(outcome, StoreFull):
            return encode({"status": 507, "error": f"{outcome}; nothing leased"}), []
        if isinstance(outcome, MarketError):
            return encode({"status": outcome.status, "error": str(outcome)}), []
        raise _unexpected(outcome)

    # Documents.

    async def openapi(self, _request: Request) -> Response:
        return Response(self.openapi_json, media_type="application/json")

    async def health(self, _request: Request) -> Response:
        return json_response({"ok": True})


def _seats(host: hosts.Host, doc: dict[str, Any]) -> list[int]:
    """A lease batch's seats, checked against the host's."""
    seats = field(doc, "seats", list)
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in seats):
        raise MarketError("field 'seats' must be a list of seat numbers")
    leasing.check_seats(host, seats)
    return seats


def _fit(doc: dict[str, Any]) -> leasing.Fit:
    """What a lease request's seller takes (memory bytes, CPU seconds, output bytes)."""
    return (
        bounded_int(doc, "max_memory_bytes", DEFAULT.memory_bytes, 0, 1 << 42),
        bounded_int(doc, "max_cpu_seconds", DEFAULT.cpu_seconds, 0, 1 << 30),
        bounded_int(doc, "max_output_bytes", leasing.NO_OUTPUT_CAP, 0, leasing.NO_OUTPUT_CAP),
    )


def _unexpected(outcome: object) -> Exception:
    """What to raise for an outcome of the posted results' operation that is neither an
    answer nor a refusal: the error itself (the database away, say)."""
    if isinstance(outcome, Exception):
        return outcome
    return AssertionError(f"an answer of the wrong kind: {outcome!r}")


def _refusal(outcome: MarketError | StoreFull) -> dict[str, Any]:
    """A refused result's answer in a reply to POST /v1/results (without its lease)."""
    if isinstance(outcome, StoreFull):
        return {"status": 507, "error": f"{outcome}; not kept"}
    return {"status": outcome.status, "error": str(outcome)}


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
    ("/v1/jobs/{job}/cancel", "POST", "cancel"),
    ("/v1/orders/{order}/revoke", "POST", "revoke_order"),
    ("/v1/orders", "POST", "downloads.create_order"),
    ("/v1/orders/{order}/livecd.iso", "GET", "downloads.livecd_iso"),
    ("/v1/orders/{order}/stick.img", "GET", "downloads.stick_img"),
    *((f"/v1/export/{name}", "GET", "downloads.export_file") for name in export.FILES),
    ("/v1/hosts", "POST", "enroll"),
    ("/v1/hosts/{host}/revoke", "POST", "revoke_host"),
    ("/v1/lease", "POST", "lease"),
    ("/v1/leases", "POST", "leases"),
    ("/v1/results", "POST", "results"),
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
    """The market as an ASGI application: the API's routes dispatched first
    (`market.dispatch`), Starlette's router for the portal and for anything else."""
    market = Market(config)
    api = [(path, method, operator.attrgetter(name)(market)) for path, method, name in ROUTES]
    return MarketApp(
        ApiRoutes(api),
        {
            MarketError: market_error,
            ClientDisconnect: client_gone,
            HTTPException: http_error,
            StoreFull: store_full,
        },
        internal_error,
        routes=[
            *(Route(path, handler, methods=[method]) for path, method, handler in api),
            *web.routes(market),
        ],
        lifespan=market.lifespan,
    )
