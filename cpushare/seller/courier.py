"""A seller's errands with the market beside the job it runs: extending its leases,
posting results, and leasing the next job before the current one ends.

Why this design. Small jobs were dominated by round trips: lease, run, post, one after
another, and a new connection per job for the lease keeper. Now:

- Two seats per seller (cpushare.seller.host.SEATS_PER_SELLER). The market hands a seat's
  active lease back when that seat asks again, so the next job is leased on the seat the
  running job does not hold: the running lease is never handed back. A seat counts as free
  only once its lease's result was acknowledged (or the lease abandoned): asking on a seat
  whose result is still unposted would hand that lease back and lose the result.
- Idle, the seller asks for all its free seats in one request (POST /v1/leases): the first
  job runs at once, the second waits as the spare. While a job runs, this courier leases a
  spare if there is none (without waiting: a long poll would hold the connection from the
  extensions and posts), so the next job starts as soon as the current one ends.
- One kept-alive connection per seller (cpushare.seller.client.MarketClient, whose lock
  takes the seller's requests in turn), used by the job loop and by this courier's one
  thread alike, instead of a connection per job.
- A result is handed to the courier and the next job starts at once; the courier posts
  what it holds in one request (POST /v1/results) and keeps each result until the market
  acknowledged it (or refused it for good, or RESULT_ATTEMPTS failed, each said on the
  console). The result's seat stays busy until then, so the seller never runs more than
  its two seats' worth ahead. A seller stopped with results in hand posts them on the way
  out (cpushare.seller.agent); one killed outright loses them, and the market, whose lease
  then expires, gives the job to another seller: nothing acknowledged is lost silently.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from cpushare.console import emit
from cpushare.jail import JobResult
from cpushare.limits import MAX_EXTEND_INTERVAL, MAX_EXTEND_SECONDS
from cpushare.protocol import (
    MAX_SEATS,
    LeaseOffer,
    Recorded,
    parse_leases,
    parse_recorded_batch,
    results_body,
)
from cpushare.seller.backoff import Backoff
from cpushare.seller.client import BadReply, Busy, MarketClient, Refused, Revoked, Unreachable

RESULT_ATTEMPTS = 8


def extend_schedule(lease_seconds: float) -> tuple[float, float]:
    """(interval, timeout) of a lease's extensions: a third of the lease each (at least
    5 s to answer), within the contract's bounds whatever the market said."""
    third = lease_seconds / 3
    return min(third, MAX_EXTEND_INTERVAL), min(max(5.0, third), MAX_EXTEND_SECONDS)


@dataclass
class Held:
    """A lease being extended: the running job's or the spare's."""

    offer: LeaseOffer
    due: float  # the next extension, by time.monotonic()


@dataclass
class Unposted:
    """A result the market has not acknowledged yet."""

    offer: LeaseOffer
    result: JobResult
    attempts: int = 0
    due: float = 0.0  # not tried again before this


class Courier:
    """One thread running a seller's market errands; the seller's main thread runs jobs.

    `accept` checks (and may clamp) a leased offer, raising BadReply to refuse it;
    `recorded` is told of each acknowledged result; `error(what, detail)` reports."""

    def __init__(
        self,
        client: MarketClient,
        seats: list[int],
        accept: Callable[[LeaseOffer], LeaseOffer],
        recorded: Callable[[JobResult, Recorded], None],
        error: Callable[[str, object], None],
        request_timeout: float,
        backoff_max: float,
    ) -> None:
        self.client = client
        self.seats = seats
        self.accept = accept
        self.recorded = recorded
        self.error = error
        self.request_timeout = request_timeout
        self.backoff = Backoff(min(1.0, backoff_max), backoff_max)
        self._cond = threading.Condition()
        self._held: dict[int, Held] = {}
        self._unposted: list[Unposted] = []
        self._spare: LeaseOffer | None = None
        self._errand = False  # an errand is under way (holding the one connection)
        self._seek: dict[str, Any] | None = None  # the lease request of a wanted spare
        self._revoked: Revoked | None = None
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="courier", daemon=True)
        self._thread.start()

    # The main thread's side.

    def free_seats(self) -> list[int]:
        """The seats holding no lease, running, spare or awaiting its result's post."""
        with self._cond:
            return self._free()

    def unposted(self) -> int:
        with self._cond:
            return len(self._unposted)

    def wait_posted(self, timeout: float) -> None:
        """Until every result is acknowledged (or given up), at most `timeout` seconds."""
        with self._cond:
            self._cond.wait_for(lambda: not self._unposted or self._revoked, timeout)

    def check(self) -> None:
        """Revoked if the market said so to this courier."""
        if self._revoked is not None:
            raise self._revoked

    def hold(self, offer: LeaseOffer, *, spare: bool = False) -> None:
        """Extend `offer`'s lease from now on (and keep it as the spare if so)."""
        interval, _ = extend_schedule(offer.lease_seconds)
        with self._cond:
            self._held[offer.lease] = Held(offer, time.monotonic() + interval)
            if spare:
                self._spare = offer
            self._cond.notify_all()

    def settle(self, timeout: float) -> None:
        """Until no spare is sought or being leased, at most `timeout` seconds: a spare
        leased meanwhile is then held, and its seat is not asked for again (which would
        hand its lease back)."""
        with self._cond:
            self._cond.wait_for(
                lambda: (self._seek is None and not self._errand) or self._revoked, timeout
            )

    def holding(self) -> bool:
        """Whether a lease is being extended: the one connection must not wait long."""
        with self._cond:
            return bool(self._held)

    def take_spare(self) -> LeaseOffer | None:
        with self._cond:
            spare, self._spare = self._spare, None
            return spare

    def seek_spare(self, body: dict[str, Any]) -> None:
        """Lease a spare job (`body` a lease request without seats) on a free seat, without
        waiting, once: at the latest when the running job's result frees its seat."""
        with self._cond:
            if self._spare is None and len(self.seats) > 1:
                self._seek = body
                self._cond.notify_all()

    def drop(self, offer: LeaseOffer) -> None:
        """Stop extending `offer`'s lease (the seller hands it back)."""
        with self._cond:
            self._held.pop(offer.lease, None)
            self._seek = None

    def deliver(self, offer: LeaseOffer, result: JobResult) -> None:
        """Post `result` of `offer`'s lease (no longer extended) until acknowledged."""
        with self._cond:
            self._held.pop(offer.lease, None)
            self._seek = None  # the job ended: the main loop leases for itself now
            self._unposted.append(Unposted(offer, result))
            self._cond.notify_all()

    def close(self) -> list[LeaseOffer | Unposted]:
        """Stop; what is still held (leases to hand back) or unposted (results), for the
        seller to settle on its way out."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(1.0)
        with self._cond:
            return [h.offer for h in self._held.values()] + list(self._unposted)

    # The courier's thread.

    def _free(self) -> list[int]:
        busy = {h.offer.seat for h in self._held.values()}
        busy |= {u.offer.seat for u in self._unposted}
        return [seat for seat in self.seats if seat not in busy]

    def _run(self) -> None:
        while True:
            with self._cond:
                errand = self._next_errand()
                while errand is None and not self._stopping:
                    self._cond.wait(self._sleep_for())
                    errand = self._next_errand()
                if self._stopping or errand is None:
                    return
                self._errand = True
            try:
                errand()
            except Revoked as exc:
                with self._cond:
                    self._revoked = exc
                    self._cond.notify_all()
                return
            finally:
                with self._cond:
                    self._errand = False
                    self._cond.notify_all()

    def _next_errand(self) -> Callable[[], None] | None:
        """Results first (they free seats), then a spare, then extensions due."""
        if self._revoked is not None:
            return None
        now = time.monotonic()
        due = [u for u in self._unposted if u.due <= now][:MAX_SEATS]
        if due:
            return lambda: self._post(due)
        free = self._free()
        if self._seek is not None and free:
            body, self._seek = {**self._seek, "seats": free[:1], "wait": 0}, None
            return lambda: self._lease_spare(body)
        extend = [h for h in self._held.values() if h.due <= now]
        if extend:
            return lambda: self._extend(extend[0])
        return None

    def _sleep_for(self) -> float | None:
        times = [h.due for h in self._held.values()] + [u.due for u in self._unposted]
        return None if not times else max(0.0, min(times) - time.monotonic())

    def _post(self, batch: list[Unposted]) -> None:
        leases = [u.offer.lease for u in batch]
        body = results_body([(u.offer.lease, u.result) for u in batch])
        try:
            doc = self.client.request_json(
                "POST", "/v1/results", body, timeout=self.request_timeout
            )
            answers: dict[int, Recorded | Exception] = dict(parse_recorded_batch(doc, leases))
        except Revoked:
            raise
        except (Unreachable, Refused, BadReply) as exc:
            answers = dict.fromkeys(leases, exc)
        failed = False
        for unposted in batch:
            answer = answers[unposted.offer.lease]
            if isinstance(answer, Recorded):
                self.recorded(unposted.result, answer)
                self._forget(unposted)
            elif isinstance(answer, Refused) or unposted.attempts + 1 >= RESULT_ATTEMPTS:
                self.error("post-result", answer)
                if not isinstance(answer, Refused):
                    self.error("post-result", f"gave up on lease {unposted.offer.lease}")
                self._forget(unposted)
            else:
                self.error("post-result", answer)
                failed = True
                with self._cond:
                    unposted.attempts += 1
                    pause = self.backoff.next_delay()
                    if isinstance(answer, Busy):
                        pause = max(pause, answer.retry_after)
                    unposted.due = time.monotonic() + pause
        if not failed:
            self.backoff.reset()

    def _forget(self, unposted: Unposted) -> None:
        with self._cond:
            self._unposted.remove(unposted)
            self._cond.notify_all()

    def _lease_spare(self, body: dict[str, Any]) -> None:
        try:
            doc = self.client.request_json("POST", "/v1/leases", body)
            offers = parse_leases(doc, body["seats"])
        except Revoked:
            raise
        except (Unreachable, Refused, BadReply) as exc:
            self.error("lease-spare", exc)
            return
        for offer in offers:
            try:
                self.hold(self.accept(offer), spare=True)
            except BadReply as exc:
                self.error("bad-reply", exc)
                self.release(offer)

    def _extend(self, held: Held) -> None:
        interval, timeout = extend_schedule(held.offer.lease_seconds)
        with self._cond:
            held.due = time.monotonic() + interval
        lease = held.offer.lease
        try:
            self.client.request_json(
                "POST", f"/v1/leases/{lease}/extend", {}, timeout=timeout, exchange=timeout
            )
        except Revoked:
            raise
        except (Refused, Unreachable, BadReply) as exc:
            self.error("extend", exc)
            if isinstance(exc, Refused):  # the lease is gone: extending it is pointless
                with self._cond:
                    self._held.pop(lease, None)
                    if self._spare is not None and self._spare.lease == lease:
                        self._spare = None

    def release(self, offer: LeaseOffer) -> None:
        """Hand a lease back that this seller will not run."""
        try:
            self.client.request_json(
                "POST", f"/v1/leases/{offer.lease}/release", {}, timeout=self.request_timeout
            )
        except (Unreachable, Refused, BadReply) as exc:
            self.error("release", exc)


def say_unposted(stream: TextIO | None, order: str, unposted: Unposted, why: object) -> None:
    """The console line of a result a stopping seller could not post: its lease expires
    and the market gives the job to another seller."""
    emit(
        "error",
        stream,
        what="result-lost",
        order=order,
        job=unposted.offer.job,
        lease=unposted.offer.lease,
        detail=f"not posted ({why}): the job runs again elsewhere",
    )
