"""A seller's errands with the market beside the jobs it runs: extending its leases,
posting results, and leasing the next jobs before the current one ends.

Why this design. Small jobs were dominated by round trips: lease, run, post, one after
another, and a new connection per job for the lease keeper. Now:

- Several seats per seller (cpushare.seller.host.SEATS_PER_SELLER), used as a queue. The
  market hands a seat's active lease back when that seat asks again, so jobs are leased
  ahead only on seats holding nothing: the running lease is never handed back. A seat
  counts as free only once its lease's result was acknowledged (or the lease abandoned):
  asking on a seat whose result is still unposted would hand that lease back and lose the
  result. A seat being asked for is not free either (the job loop and this courier never
  ask for the same seat at once).
- Leased jobs wait in a queue, each lease extended, while one job runs. The queue is
  refilled in ONE request for all the seats it needs: idle, the seller asks for them
  itself (POST /v1/leases; the first job runs at once); while jobs run, this courier does,
  without waiting (a long poll would hold the connection from the extensions and posts),
  in the post of the results that free those seats: POST /v1/results with `next`, the
  results and the next leases in one round trip (a seat whose result the market did not
  acknowledge keeps its lease there and gets none). A lease request of its own goes only
  when the queue runs low between posts, or to a market that ignores `next`. How many:
  the queue holds as many jobs as run in a few round trips (QUEUE_TRIPS), measured as they
  go, and those that run while a batch of results gathers (one spare for long jobs, up to
  every seat for tiny ones), and no more than the seller's memory plan gives the queued
  jobs' inputs (cpushare.seller.plan.QUEUE_INPUT_BYTES).
- One kept-alive connection per seller (cpushare.seller.client.MarketClient, whose lock
  takes the seller's requests in turn), used by the job loop and by this courier's one
  thread alike, instead of a connection per job. Posts and leases take turns on it, so
  neither starves the other while jobs end faster than a round trip.
- A result is handed to the courier and the next job starts at once; the courier posts
  what it holds in one request (POST /v1/results) and keeps each result until the market
  acknowledged it (or refused it for good, or RESULT_ATTEMPTS failed, each said on the
  console). The result's seat stays busy until then, so the seller never runs more than
  its seats' worth ahead, and a job starts only while the outputs awaiting their post
  leave room for its own (`make_room`). A seller stopped with results in hand posts them
  on the way out (cpushare.seller.agent); one killed outright loses them, and the
  market, whose lease then expires, gives the job to another seller: nothing
  acknowledged is lost silently. A request costs a seller under emulation several times
  a tiny job, so the results of tiny jobs are posted several together (POST_BATCH, none
  waiting more than POST_DELAY), as long as the queue covers the round trips meanwhile and
  the job loop waits for no post.
- Inputs and outputs travel raw after their documents (cpushare.protocol.BLOBS) once the
  market answered a lease request so: no base64 of them, nor JSON's scan of its text,
  which cost a seller under emulation about a third of its CPU a tiny job.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import deque
from collections.abc import Callable

from cpushare.console import emit
from cpushare.jail import JobResult
from cpushare.limits import MAX_EXTEND_INTERVAL, MAX_EXTEND_SECONDS
from cpushare.protocol import (
    MAX_SEATS,
    Blobs,
    LeaseOffer,
    Recorded,
    parse_leases,
    parse_next,
    parse_recorded_batch,
    results_body,
)
from cpushare.record import record
from cpushare.replies import BadReply, Busy, Refused, Revoked, Unreachable
from cpushare.seller.backoff import Backoff
from cpushare.seller.client import MarketClient
from cpushare.seller.plan import QUEUE_INPUT_BYTES

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any, TextIO

RESULT_ATTEMPTS = 8
# Weight of the latest measure in the running means of a job's time and a round trip's.
SMOOTHING = 0.3
# A seat comes back two round trips after its job ended (its result's post, its next
# lease), the courier may be in the middle of another errand, and a round trip may take
# twice the mean: the queue covers this many round trips' worth of jobs.
QUEUE_TRIPS = 4.0
# An extension this late goes before posts and leases, however busy they keep the courier.
EXTEND_LATE = 1.0
# Results of tiny jobs are posted this many together (a request costs the seller far more
# than such a job), each waiting at most POST_DELAY seconds (see _holding_back).
POST_BATCH = 8
POST_DELAY = 0.25
# A long-polled lease that came back with jobs within this many seconds stands for the
# first round trip (see Courier._lease): at worst, the queue is sized for a round trip this
# long until the quick ones measured bring the mean down.
FIRST_TRIP_MAX = 1.0


def extend_schedule(lease_seconds: float) -> tuple[float, float]:
    """(interval, timeout) of a lease's extensions: a third of the lease each (at least
    5 s to answer), within the contract's bounds whatever the market said."""
    third = lease_seconds / 3
    return min(third, MAX_EXTEND_INTERVAL), min(max(5.0, third), MAX_EXTEND_SECONDS)


def queue_target(job_seconds: float | None, trip_seconds: float | None, seats: int) -> int:
    """How many leased jobs to keep waiting behind the running one: as many as run in
    QUEUE_TRIPS round trips, and those that run while a batch of results gathers
    (post_batch); one (a spare) for long jobs and until a job's time is known; within the
    seller's other seats."""
    if seats < 2:
        return 0
    if job_seconds is None or trip_seconds is None:
        return 1
    wanted = _trips_of_jobs(job_seconds, trip_seconds) + post_batch(job_seconds) - 1
    return max(1, min(seats - 1, wanted))


def post_batch(job_seconds: float) -> int:
    """How many results of jobs this long are posted together: as many as end in
    POST_DELAY seconds, at most POST_BATCH (1 for jobs of POST_DELAY or more)."""
    return max(1, min(POST_BATCH, math.ceil(POST_DELAY / max(job_seconds, 1e-6))))


def _trips_of_jobs(job_seconds: float, trip_seconds: float) -> int:
    return math.ceil(QUEUE_TRIPS * trip_seconds / max(job_seconds, 1e-6))


def _mean(old: float | None, new: float) -> float:
    return new if old is None else old + SMOOTHING * (new - old)


@record
class Held:
    """A lease being extended: the running job's or a queued one's."""

    offer: LeaseOffer
    due: float  # the next extension, by time.monotonic()


@record(eq=False)  # found in the list by identity, not by comparing outputs
class Unposted:
    """A result the market has not acknowledged yet."""

    offer: LeaseOffer
    result: JobResult
    since: float  # handed to the courier, by time.monotonic()
    attempts: int = 0
    due: float = 0.0  # not tried again before this


class Courier:
    """One thread running a seller's market errands; the seller's main thread runs jobs.

    `accept` checks (and may clamp) a leased offer, raising BadReply to refuse it;
    `recorded` is told of the results each post got acknowledged (one call a post: the
    seller's status file is written once for them); `error(what, detail)` reports.
    `queue_bytes`: the most input bytes the queued jobs may hold (one is always allowed)."""

    def __init__(
        self,
        client: MarketClient,
        seats: list[int],
        accept: Callable[[LeaseOffer], LeaseOffer],
        recorded: Callable[[list[tuple[JobResult, Recorded]]], None],
        error: Callable[[str, object], None],
        request_timeout: float,
        backoff_max: float,
        queue_bytes: int = QUEUE_INPUT_BYTES,
    ) -> None:
        self.client = client
        self.seats = seats
        self.accept = accept
        self.recorded = recorded
        self.error = error
        self.request_timeout = request_timeout
        self.queue_bytes = queue_bytes
        self.backoff = Backoff(min(1.0, backoff_max), backoff_max)
        self._cond = threading.Condition()
        self._held: dict[int, Held] = {}
        self._unposted: list[Unposted] = []
        self._unposted_bytes = 0  # the outputs of the results in `_unposted`
        self._queue: deque[LeaseOffer] = deque()
        self._asking: set[int] = set()  # seats in a lease request under way
        self._ahead: dict[str, Any] | None = None  # the lease request of jobs to queue
        self._started: dict[int, float] = {}  # lease -> when its job was taken to run
        self._job_seconds: float | None = None
        self._trip_seconds: float | None = None
        # The queue's sizes for these means (see _resize), worked out once as they change,
        # not at each of the several looks a job takes.
        self._target = queue_target(None, None, len(seats))
        self._trips = 0  # jobs that run in a few round trips (_trips_of_jobs, in seats)
        self._batch = 1  # results posted together (post_batch)
        self._wakes_at = math.inf  # the end of the courier's wait, if it waits
        self._largest_input = 0  # of the jobs leased so far
        self._posted_last = False  # the last errand was a post: a lease goes next
        self._together = True  # the market leases beside results (POST /v1/results' next)
        # The market answered a lease request with a BLOBS document: it takes results so.
        self._blobs = False
        self._errand = False  # an errand is under way (holding the one connection)
        self._hurry = False  # the job loop waits for results to be posted
        self._revoked: Revoked | None = None
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="courier", daemon=True)
        self._thread.start()

    # The main thread's side.

    def free_seats(self) -> list[int]:
        """The seats holding no lease, running, queued, asked for or awaiting its result's
        post."""
        with self._cond:
            return self._free()

    def unposted(self) -> int:
        with self._cond:
            return len(self._unposted)

    def queued(self) -> int:
        with self._cond:
            return len(self._queue)

    @property
    def job_seconds(self) -> float | None:
        """The running mean of a job's time, from its start to its result (None until one
        ended). Read without the lock: a float, replaced whole."""
        return self._job_seconds

    def target(self) -> int:
        """How many jobs the queue is kept at now (cpushare.seller.courier.queue_target)."""
        with self._cond:
            return self._target

    def wait_posted(self, timeout: float) -> None:
        """Until every result is acknowledged (or given up), at most `timeout` seconds."""
        with self._cond:
            self._cond.wait_for(lambda: not self._unposted or self._revoked, timeout)

    def make_room(self, output_bytes: int, budget: int, timeout: float) -> bool:
        """Until the outputs awaiting their post and `output_bytes` more fit in `budget`
        (or nothing awaits its post), at most `timeout` seconds; whether they do."""

        def room() -> bool:
            return not self._unposted or self._unposted_bytes + output_bytes <= budget

        with self._cond:
            if not room():
                self._hurry = True  # no result waits for others to go with it
                self._cond.notify_all()
            try:
                self._cond.wait_for(lambda: room() or self._revoked, timeout)
            finally:
                self._hurry = False
            return room()

    def check(self) -> None:
        """Revoked if the market said so to this courier."""
        if self._revoked is not None:
            raise self._revoked

    def hold(self, offer: LeaseOffer) -> None:
        """Extend `offer`'s lease from now on."""
        interval, _ = extend_schedule(offer.lease_seconds)
        with self._cond:
            self._held[offer.lease] = Held(offer, time.monotonic() + interval)
            self._cond.notify_all()

    def holding(self) -> bool:
        """Whether a lease is being extended: the one connection must not wait long."""
        with self._cond:
            return bool(self._held)

    def next_job(self, timeout: float) -> LeaseOffer | None:
        """The queue's next job (its lease still extended), waiting at most `timeout`
        seconds for a lease request of this courier's under way; None when the queue is
        empty (the job loop then leases for itself)."""
        with self._cond:
            self._cond.wait_for(lambda: self._queue or not self._asking or self._revoked, timeout)
            if not self._queue:
                return None
            offer = self._queue.popleft()
            self._started[offer.lease] = time.monotonic()
            if self._queue_low():  # the queue is shorter: lease ahead or post if wanted
                self._cond.notify_all()
            return offer

    def starts_now(self, offer: LeaseOffer) -> None:
        """`offer`'s job starts only now, its time counted from here: a seller's first
        job waited for its program and the jail's look-ups, which the next ones do not
        (counted in, they sized the first queue for jobs several times longer)."""
        with self._cond:
            if offer.lease in self._started:
                self._started[offer.lease] = time.monotonic()

    def lease(self, body: dict[str, Any], wait: float) -> None:
        """Lease jobs into the queue now, in the job loop's thread: on as many free seats
        as the queue wants and one more (for the job to run now), waiting up to `wait`
        seconds for the first; Unreachable, Refused, Revoked or BadReply as the market's
        reply (BadReply also when it refused every offer). A post of this courier's under
        way may be leasing jobs beside its results: it is waited for, and the jobs it
        brought are run, not asked for again; the wait is dropped while leases or results
        are in hand (a long poll would hold the one connection from their errands)."""
        with self._cond:
            self._cond.wait_for(
                lambda: not self._asking or self._revoked is not None, self.request_timeout
            )
            if self._queue:
                return
            if self._held or self._unposted:
                wait = 0.0
            seats = self._ask(1)
        if not seats:
            return  # the seats are busy with results still unposted
        try:
            self._lease(body, seats, wait)
        finally:
            with self._cond:
                self._asking -= set(seats)
                self._cond.notify_all()

    def lease_ahead(self, body: dict[str, Any] | None) -> None:
        """Keep the queue filled (`body` a lease request without seats and wait) while
        jobs come: asked again at each job's start, until the market has fewer jobs than
        the seats asked for; None: no more for now."""
        with self._cond:
            # Asked again at every job: the courier needs waking only when there was none.
            wake = self._ahead is None and body is not None
            self._ahead = body
            if wake:
                self._cond.notify_all()

    def drop(self, offer: LeaseOffer) -> None:
        """Stop extending `offer`'s lease (the seller hands it back)."""
        with self._cond:
            self._held.pop(offer.lease, None)
            self._started.pop(offer.lease, None)
            self._cond.notify_all()

    def deliver(self, offer: LeaseOffer, result: JobResult) -> None:
        """Post `result` of `offer`'s lease (no longer extended) until acknowledged."""
        with self._cond:
            self._held.pop(offer.lease, None)
            started = self._started.pop(offer.lease, None)
            now = time.monotonic()
            if started is not None:
                self._job_seconds = _mean(self._job_seconds, now - started)
                self._resize()
            self._unposted.append(Unposted(offer, result, now))
            self._unposted_bytes += len(result.output)
            if not self._held_back(now):
                self._cond.notify_all()

    def close(self) -> list[LeaseOffer | Unposted]:
        """Stop; what is still held (leases to hand back: the running one's, the queued
        ones) or unposted (results), for the seller to settle on its way out."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(1.0)
        with self._cond:
            self._queue.clear()
            return [h.offer for h in self._held.values()] + list(self._unposted)

    # Either side, under the lock.

    def _queue_low(self) -> bool:
        """Whether the job just taken from the queue may give the courier an errand:
        the queue fell below what a lease ahead waits for (`_lease_errand`), or below
        what keeps results held back for a batch (`_holding_back`). Otherwise it sleeps
        on: a wake-up costs the job loop a switch to its thread and back, for nothing."""
        if self._job_seconds is None or self._trip_seconds is None or not self._together:
            return True
        queued = len(self._queue)
        if queued < max(1, self._target // 2):
            return True
        return bool(self._unposted) and queued < self._trips

    def _resize(self) -> None:
        """The queue's sizes for the running means of a job's time and a round trip's
        (under the lock, after either changed)."""
        job, trip, seats = self._job_seconds, self._trip_seconds, len(self.seats)
        self._target = queue_target(job, trip, seats)
        if job is not None and trip is not None:
            self._trips = min(_trips_of_jobs(job, trip), seats - 1)
            self._batch = post_batch(job)

    def _held_back(self, now: float) -> bool:
        """Whether a result just delivered would only wait for more (`_holding_back`), with
        the courier already waiting and due to wake up no later than it must go: then it
        need not be woken now."""
        if self._job_seconds is None or self._trip_seconds is None:
            return False
        if self._hurry or self._stopping or self._errand or len(self._unposted) >= self._batch:
            return False
        if len(self._queue) < self._trips:
            return False  # the queue no longer covers the round trips: it goes now
        return self._wakes_at - now <= POST_DELAY

    def _free(self) -> list[int]:
        busy = {h.offer.seat for h in self._held.values()} | self._asking
        busy |= {u.offer.seat for u in self._unposted}
        return [seat for seat in self.seats if seat not in busy]

    def _ask(self, now: int, posting: list[int] | None = None) -> list[int]:
        """The free seats to ask for (marked as asked): `now` jobs to run at once and
        those the queue wants, within the queued inputs' budget; `posting`, the seats of
        results posted in the same request, are free if the market acknowledges them."""
        want = self._target - len(self._queue)
        if self._largest_input:  # the queued inputs and as many more of the largest seen
            queued = sum(len(o.input) for o in self._queue)
            room = (self.queue_bytes - queued) // self._largest_input
        else:
            room = 1  # the inputs' size is not known yet
        if not self._queue:
            room = max(room, 1)  # a spare, whatever its size (as with two seats)
        free = self._free() + [seat for seat in posting or [] if seat not in self._asking]
        seats = free[: max(0, now + min(want, room))]
        self._asking |= set(seats)
        return seats

    # The courier's thread.

    def _run(self) -> None:
        while True:
            with self._cond:
                errand = self._next_errand()
                while errand is None and not self._stopping:
                    wait = self._sleep_for()
                    self._wakes_at = math.inf if wait is None else time.monotonic() + wait
                    try:
                        self._cond.wait(wait)
                    finally:
                        self._wakes_at = math.inf
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
        """A late extension first; then posts and leases in turn (results free seats,
        leases fill the queue); then extensions due."""
        if self._revoked is not None:
            return None
        now = time.monotonic()
        extend = [h for h in self._held.values() if h.due <= now]
        late = [h for h in extend if h.due + EXTEND_LATE <= now]
        if late:
            return lambda: self._extend(late[0])
        due = [u for u in self._unposted if u.due <= now][:MAX_SEATS]
        if due and self._holding_back(due, now):
            due = []
        if due and self._ahead is not None and self._together and not self._asking:
            # One request: the results, and the next jobs on their seats and the free ones.
            seats = self._ask(0, [u.offer.seat for u in due if u.offer.seat is not None])
            if seats:
                body = self._ahead
                self._posted_last = False
                return lambda: self._post(due, (body, seats))
        lease = (
            self._lease_errand()
            if self._ahead is not None and not (due and not self._posted_last)
            else None
        )
        if lease is not None:
            self._posted_last = False
            return lease
        if due:
            self._posted_last = True
            return lambda: self._post(due)
        if extend:
            return lambda: self._extend(extend[0])
        return None

    def _lease_errand(self) -> Callable[[], None] | None:
        assert self._ahead is not None
        if self._asking:
            return None  # the job loop is leasing
        if self._together and self._started and len(self._queue) >= max(1, self._target // 2):
            return None  # the running job's result is near: its post will lease too
        seats = self._ask(0)
        if not seats:
            return None
        body = self._ahead

        def errand() -> None:
            try:
                got = self._lease(body, seats, 0.0)
            except Revoked:
                raise
            except (Unreachable, Refused, BadReply) as exc:
                self.error("lease-ahead", exc)
                got = 0
            finally:
                with self._cond:
                    self._asking -= set(seats)
            if got < len(seats):  # the market has no more for now: asked again next job
                with self._cond:
                    if self._ahead is body:
                        self._ahead = None

        return errand

    def _holding_back(self, due: list[Unposted], now: float) -> bool:
        """Whether the results `due` wait for more to go with them: while tiny jobs keep
        running (the queue holds the jobs of the round trips to come, nobody waits on a
        post), until POST_BATCH of them or as many as end in POST_DELAY seconds are due,
        or the first has waited POST_DELAY seconds."""
        if self._job_seconds is None or self._trip_seconds is None:
            return False
        if self._hurry or self._stopping or len(due) >= self._batch:
            return False
        if min(u.since for u in due) + POST_DELAY <= now:
            return False
        # The queue still covers the round trips to come (what it holds beyond them
        # runs while the batch gathers).
        return len(self._queue) >= self._trips

    def _sleep_for(self) -> float | None:
        times = [h.due for h in self._held.values()]
        times += [max(u.due, u.since + POST_DELAY) for u in self._unposted]
        return None if not times else max(0.0, min(times) - time.monotonic())

    def _exchange(
        self,
        path: str,
        body: list[bytes],
        *,
        blobs: bool = False,
        timed: bool = True,
        timeout: float | None = None,
    ) -> tuple[dict[str, Any] | None, Blobs | None]:
        """A POST whose reply may come as a BLOBS document (cpushare.protocol): from then
        on this courier's results go as such too. Its time (`timed`: quick, not a long
        poll) goes into the round trip's running mean; `timeout` bounds each read (the
        client's own if None)."""
        started = time.monotonic()
        doc, tail = self.client.request_blobs("POST", path, body, blobs=blobs, timeout=timeout)
        took = time.monotonic() - started
        if tail is not None:
            self._blobs = True
        if timed:
            self._timed_trip(took)
        return doc, None if tail is None else Blobs(tail)

    def _timed_trip(self, took: float, *, first: bool = False) -> None:
        """A round trip of `took` seconds into the running mean (unless far off it);
        `first`: only if none was measured yet."""
        with self._cond:
            if first and self._trip_seconds is not None:
                return
            if self._trip_seconds is None or took < 4 * self._trip_seconds + 1:
                self._trip_seconds = _mean(self._trip_seconds, took)
                self._resize()

    def _lease(self, body: dict[str, Any], seats: list[int], wait: float) -> int:
        """Lease on `seats` (asked for already) into the queue; how many came. A lease
        that may wait (a long poll) is no round trip's measure, but the first that came
        back with jobs within FIRST_TRIP_MAX seconds stands for one until a quick request
        is timed: the first results' post then leases a full queue (the jobs' time is
        known once the first ended) instead of one more spare, which ran dry again and
        again while the queue grew a round trip at a time."""
        request = [json.dumps({**body, "seats": seats, "wait": wait}).encode()]
        started = time.monotonic()
        doc, blobs = self._exchange("/v1/leases", request, timed=not wait)
        took = time.monotonic() - started
        offers = parse_leases(doc, seats, blobs)
        if wait and offers and took <= FIRST_TRIP_MAX:
            self._timed_trip(took, first=True)  # before the first job can end
        return self._queue_offers(offers)

    def _queue_offers(self, offers: list[LeaseOffer]) -> int:
        """Hold and queue the offers this seller accepts (handing the others back); how
        many came; BadReply when it refused every one."""
        refusal: BadReply | None = None
        accepted: list[LeaseOffer] = []
        refused: list[LeaseOffer] = []
        for offer in offers:
            try:
                accepted.append(self.accept(offer))
            except BadReply as exc:
                refusal = exc
                self.error("bad-reply", exc)
                refused.append(offer)
        if accepted:  # held and queued at once: one wake-up of the job loop for them all
            now = time.monotonic()
            with self._cond:
                for offer in accepted:
                    interval, _ = extend_schedule(offer.lease_seconds)
                    self._held[offer.lease] = Held(offer, now + interval)
                    self._largest_input = max(self._largest_input, len(offer.input))
                    self._queue.append(offer)
                self._cond.notify_all()
        for offer in refused:  # handed back once the others are queued
            self.release(offer)
        if offers and not accepted and refusal is not None:
            raise refusal
        return len(offers)

    def _post(
        self, batch: list[Unposted], ahead: tuple[dict[str, Any], list[int]] | None = None
    ) -> None:
        """Post `batch`'s results; with `ahead` (a lease request and the seats asked for
        already), lease the next jobs in the same request."""
        try:
            self._post_and_lease(batch, ahead)
        finally:
            if ahead is not None:
                with self._cond:
                    self._asking -= set(ahead[1])
                    self._cond.notify_all()

    def _post_and_lease(
        self, batch: list[Unposted], ahead: tuple[dict[str, Any], list[int]] | None
    ) -> None:
        leases = [u.offer.lease for u in batch]
        request = None if ahead is None else {**ahead[0], "seats": ahead[1]}
        results = [(u.offer.lease, u.result) for u in batch]
        body = results_body(results, request, blobs=self._blobs)
        doc: dict[str, Any] | None = None
        blobs: Blobs | None = None
        try:
            doc, blobs = self._exchange(
                "/v1/results", body, blobs=self._blobs, timeout=self.request_timeout
            )
            answers: dict[int, Recorded | Exception] = dict(parse_recorded_batch(doc, leases))
        except Revoked:
            raise
        except (Unreachable, Refused, BadReply) as exc:
            answers = dict.fromkeys(leases, exc)
            doc = None
        self._settle_results(batch, answers)
        if ahead is not None and doc is not None:
            # The seats whose results the market did not acknowledge keep their leases.
            kept = {u.offer.seat for u in batch if not isinstance(answers[u.offer.lease], Recorded)}
            seats = [seat for seat in ahead[1] if seat not in kept]
            self._take_next(doc, seats, ahead[0], blobs)

    def _take_next(
        self, doc: dict[str, Any], seats: list[int], body: dict[str, Any], blobs: Blobs | None
    ) -> None:
        """Queue the leases a results post got beside its answers, on `seats` (their
        inputs in `blobs` if the reply came as a BLOBS document)."""
        try:
            granted = parse_next(doc, seats, blobs)
            if isinstance(granted, Exception):
                raise granted
            if granted is None:  # a market that leases only apart: ask it so from now on
                with self._cond:
                    self._together = False
                return
            got = self._queue_offers(granted)
        except (Unreachable, Refused, BadReply) as exc:
            self.error("lease-ahead", exc)
            got = 0
        if got < len(seats):  # the market has no more for now: asked again next job
            with self._cond:
                if self._ahead is body:
                    self._ahead = None

    def _settle_results(
        self, batch: list[Unposted], answers: dict[int, Recorded | Exception]
    ) -> None:
        """Each result acknowledged, refused for good or kept for another try."""
        failed = False
        acknowledged = [
            (u.result, answer)
            for u in batch
            if isinstance(answer := answers[u.offer.lease], Recorded)
        ]
        if acknowledged:
            self.recorded(acknowledged)
        settled = []
        for unposted in batch:
            answer = answers[unposted.offer.lease]
            if isinstance(answer, Recorded):
                settled.append(unposted)
            elif isinstance(answer, Refused) or unposted.attempts + 1 >= RESULT_ATTEMPTS:
                self.error("post-result", answer)
                if not isinstance(answer, Refused):
                    self.error("post-result", f"gave up on lease {unposted.offer.lease}")
                settled.append(unposted)
            else:
                self.error("post-result", answer)
                failed = True
                with self._cond:
                    unposted.attempts += 1
                    pause = self.backoff.next_delay()
                    if isinstance(answer, Busy):
                        pause = max(pause, answer.retry_after)
                    unposted.due = time.monotonic() + pause
        if settled:
            with self._cond:
                gone = set(map(id, settled))
                self._unposted = [u for u in self._unposted if id(u) not in gone]
                self._unposted_bytes -= sum(len(u.result.output) for u in settled)
                self._cond.notify_all()
        if not failed:
            self.backoff.reset()

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
                    if any(o.lease == lease for o in self._queue):
                        self._queue = deque(o for o in self._queue if o.lease != lease)

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
