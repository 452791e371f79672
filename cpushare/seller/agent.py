"""The seller's loop: check the jail, then lease, fetch, run jailed, extend, post; forever.

Its courier (cpushare.seller.courier) extends the leases, posts the results and keeps a
queue of jobs leased ahead while the current one runs, over the seller's one kept-alive
connection.

Every request is made as this machine's host (cpushare.seller.host), on this seller's
seats: its starting process hands it the identity on a pipe (`identity_fd`, read once the
jail checked out, for as long as the enrollment takes); a seller started alone enrolls
itself with SEATS_PER_SELLER seats. Nothing the market says can stop it but a revocation: an
unreachable or busy market means backing off with jitter, a malformed or hostile reply is
logged on the console and survived, an unknown host (the market was reset) enrolls again
once. Revoked, it says so in one console line and exits EXIT_REVOKED for good. Stopped
(SIGTERM) with a job in hand, it hands its leases back so the jobs are requeued at once,
and posts the results it still holds.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from cpushare.console import emit
from cpushare.jail import Jail, JailError, JobResult, Limits, run_prepared, self_test
from cpushare.limits import BOUNDS, MAX_EXCHANGE_SECONDS
from cpushare.order import SellOrder
from cpushare.protocol import LeaseOffer, Recorded, parse_recorded_batch, results_body
from cpushare.replies import BadReply, Busy, Refused, Revoked, Unreachable
from cpushare.seller.backoff import Backoff
from cpushare.seller.client import MarketClient
from cpushare.seller.courier import Courier, Unposted, say_unposted
from cpushare.seller.host import (
    ENROLL_TIMEOUT,
    NETWORK_WAIT,
    SEATS_PER_SELLER,
    Identity,
    enroll,
    read_identity,
    say_revoked,
)
from cpushare.seller.joblines import JobLines
from cpushare.seller.options import SellerOptions
from cpushare.seller.plan import QUEUE_INPUT_BYTES
from cpushare.seller.programs import PROGRAM_CACHE_BYTES, ProgramCache
from cpushare.seller.status import SellerStatus, StatusFile, boottime

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import TextIO

# The longest a new seller may take to say anything: the jail's self-test, under emulation.
SELF_TEST_SECONDS = 120.0
# Handing a lease back is a courtesy on the way out: it must not delay a power-off.
RELEASE_TIMEOUT = 3.0
# Stopped sellers get this long to hand their leases back before they are killed.
STOP_SECONDS = 5.0
# A seller the market revoked exits with this status, and is not restarted.
EXIT_REVOKED = 3
# How long a thread holds the interpreter lock while another waits for it (see run).
SWITCH_SECONDS = 0.0005
# Jobs back to back write the status file at most once in this many seconds (see _running).
RUNNING_WRITES = 1.0
# Jobs shorter than this (a running mean) leave the acknowledged results' counts to the
# job loop's next status write (see _written_soon).
TINY_JOB_SECONDS = 0.25


def stop_on_signal(signum: int, _frame: FrameType | None) -> None:
    """SIGTERM: unwind (the seller hands its lease back on the way); a second one while
    that happens is ignored."""
    signal.signal(signum, signal.SIG_IGN)
    raise SystemExit(128 + signum)


class Seller:
    """One seller serving one order."""

    def __init__(
        self,
        order: SellOrder,
        order_file: Path,
        options: SellerOptions,
        stream: TextIO | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        identity_fd: int | None = None,
        jail_checked: bool = False,
    ) -> None:
        self.order = order
        # The process that forked this seller (the fleet) checked the jail itself, in
        # the same process, on the same kernel, with the same loader: not again here (two
        # jailed runs, about 0.2 s under emulation, on the way to the first job).
        self.jail_checked = jail_checked
        self.options = options
        self.stream = stream
        self.sleep = sleep
        self.identity: Identity | None = None
        self.identity_fd = identity_fd
        # An unknown host enrolls again once; again unknown, it is an error.
        self.reenrolled = False
        self.client = self._client(options.wait + options.request_timeout)
        self.courier: Courier | None = None  # once this seller has a host identity
        self.running: LeaseOffer | None = None
        # The first pauses are short (a blip), unless the cap is shorter still.
        self.backoff = Backoff(min(1.0, options.backoff_max), options.backoff_max)
        cache = PROGRAM_CACHE_BYTES if options.program_cache is None else options.program_cache
        self.cache = ProgramCache(cache)
        self.jail: Jail | None = None  # the loader and the jobs' identity, found once
        # The jail's limits of the last job's market limits (back to back, the same), by
        # the offer's four numbers: no JobLimits made and compared field by field per job.
        self._limits: tuple[tuple[int, float, int, int], Limits] | None = None
        self.max_output = options.output_cap or BOUNDS["output_bytes"].high
        self.instance = f"{os.getpid()}-{os.urandom(4).hex()}"  # no secrets module: memory
        self.lines = JobLines(stream, order.order_id, options.job_lines)
        self.nice = order.nice if options.nice is None else options.nice
        self.max_memory = min(order.max_memory_bytes, options.memory_cap or order.max_memory_bytes)
        self.status = StatusFile(
            options.status_dir,
            order_file,
            SellerStatus(
                order=order.order_id,
                market=order.market_url,
                account=order.account,
                cpu=options.cpu,
                nice=self.nice,
                stale_after=boottime() + SELF_TEST_SECONDS,
            ),
        )

    def _client(self, timeout: float, exchange: float = MAX_EXCHANGE_SECONDS) -> MarketClient:
        """A connection as this seller's host (as its order, to enroll, without one)."""
        credentials = None if self.identity is None else self.identity.credentials
        return MarketClient(self.order, timeout, credentials, exchange=exchange)

    def _use(self, identity: Identity | None) -> None:
        self._settle()
        self.identity = identity
        self.client.close()
        self.client = self._client(self.client.timeout)
        if identity is not None:
            self.courier = Courier(
                self.client,
                identity.own_seats,
                self.accept,
                self._recorded,
                self._error,
                self.options.request_timeout,
                self.options.backoff_max,
                QUEUE_INPUT_BYTES if self.options.queue_input is None else self.options.queue_input,
            )

    def _state(self, state: str, within: float, **changes: object) -> None:
        """Enter `state`, promising the next status write within `within` seconds (the
        watchdog adds its own margin)."""
        stale_after = round(boottime() + within, 1)
        self.status.update(state=state, stale_after=stale_after, **changes)

    def _running(self, offer: LeaseOffer) -> None:
        """Enter "running" for `offer`'s job. Tiny jobs come back to back, and a write of
        the status file costs an open, a write and a rename (milliseconds of system time
        under emulation): each write promises RUNNING_WRITES seconds more than the job
        needs, and a job that the last promise still covers only changes the status in
        memory (its number is written with the next write)."""
        within = 2 * self.options.request_timeout + offer.wall_seconds
        s = self.status.status
        if s.state == "running" and s.stale_after >= boottime() + within:
            self.status.note(job=offer.job)
        else:
            self._state("running", within + RUNNING_WRITES, job=offer.job)

    def _market_answered(self) -> None:
        self.status.update(market_seen=round(boottime(), 1))

    def _error(self, what: str, detail: object) -> None:
        emit("error", self.stream, what=what, order=self.order.order_id, detail=str(detail))
        self.status.update(last_error=f"{what}: {detail}")

    def check_jail(self) -> bool:
        """Run the jail's self-test; say on the console why not if it fails."""
        report = self_test(loader=self.options.loader)
        if not report.ok:
            emit("seccomp", self.stream, status="failed", reason=report.summary())
            self.status.update(state="failed", last_error=report.summary())
        return report.ok

    def run(self) -> int:
        """Serve until killed; 1 if the jail is unusable here, EXIT_REVOKED once revoked."""
        if self.options.cpu is not None:
            os.sched_setaffinity(0, {self.options.cpu})
        if not self.jail_checked and not self.check_jail():
            return 1
        # The job loop waits in a system call at every step of a job (spawn, poll, read,
        # wait, the console line, the status file) and, back from it, for the interpreter
        # lock while the courier's thread holds it (TLS, JSON): up to the switch interval
        # each time, 5 ms by default, several times a job. Asked sooner to let go.
        sys.setswitchinterval(SWITCH_SECONDS)
        emit(
            "seller-started",
            self.stream,
            order=self.order.order_id,
            cpu="all" if self.options.cpu is None else self.options.cpu,
            nice=self.nice,
            pid=os.getpid(),
        )
        try:
            if self.identity_fd is not None and (code := self.receive_identity()) is not None:
                return code
            while True:
                self.serve_once()
        except (SystemExit, KeyboardInterrupt):
            self._settle()
            raise
        except Revoked as exc:
            say_revoked(self.order.order_id, exc, self.stream)
            self.status.update(state="revoked", last_error=f"revoked: {exc}")
            return EXIT_REVOKED
        finally:
            if self.status.status.state != "revoked":
                self.status.update(state="stopped", job=None, stale_after=0.0)
            else:
                self.status.update(job=None, stale_after=0.0)
            self.client.close()

    def receive_identity(self) -> int | None:
        """Wait for the host identity on `identity_fd` (no promise to the watchdog: the
        market may be down for long); an exit status if none comes."""
        assert self.identity_fd is not None
        self.status.update(state="enrolling", stale_after=0.0)
        try:
            identity = read_identity(self.identity_fd)
        except (OSError, ValueError) as exc:
            self._error("identity", f"fd {self.identity_fd}: {exc}")
            return 2
        if identity is None:  # the order is revoked, as the enrolling process said
            self.status.update(state="revoked")
            return EXIT_REVOKED
        if identity.order != self.order.order_id:
            self._error("identity", f"the host is not enrolled under order {self.order.order_id}")
            return 2
        self._use(identity)
        return None

    def serve_once(self) -> None:
        """One lease attempt (enrolling first without a host) and, if a job came, its
        whole life; errors end in a backoff, a revocation in Revoked."""
        try:
            if self.identity is None:
                # Waiting for a route first, while the machine comes up (enroll).
                self._state("enrolling", ENROLL_TIMEOUT + NETWORK_WAIT, job=None)
                self._use(enroll(self.order, SEATS_PER_SELLER, self.stream).for_seller(0))
            assert self.courier is not None
            self.courier.check()
            offer = self.courier.next_job(self.options.request_timeout)
            if offer is None:
                # The results still unposted may take a request's time before the lease.
                within = self.client.timeout + self.options.request_timeout
                self._state("leasing", within, job=None)
                offer = self.lease(self.courier)
                self._market_answered()
            self.backoff.reset()
            self.reenrolled = False
            if offer is not None:
                self.work(offer, self.courier)
        except Revoked:
            raise
        except Busy as exc:
            self._error("market-busy", exc)
            self.pause(exc.retry_after)
        except Unreachable as exc:
            self._error("market-unreachable", exc)
            self.pause()
        except Refused as exc:
            if exc.status == 401 and self.identity is not None and not self.reenrolled:
                # The market no longer knows this host (reset, or its database replaced).
                self._error("unknown-host", exc)
                self.reenrolled = True
                self._use(None)
                return
            self._error("market-refused", exc)
            self.pause()
        except BadReply as exc:
            self._error("bad-reply", exc)
            self.pause()
        except JailError as exc:
            self._error("jail", exc)
            self.pause()

    def pause(self, at_least: float = 0.0) -> None:
        delay = max(self.backoff.next_delay(), at_least)
        self._state("backoff", delay, job=None)
        self.sleep(delay)

    def lease_request(self) -> dict[str, object]:
        """What this seller asks the market for, but the seats and the wait."""
        return {
            "seller": self.instance,
            "max_memory_bytes": self.max_memory,
            "max_cpu_seconds": self.order.max_cpu_seconds,
            "max_output_bytes": self.max_output,
        }

    def lease(self, courier: Courier) -> LeaseOffer | None:
        """Lease the job to run now and those the queue wants, in one request on free
        seats. With results still unposted (their seats busy), no long poll."""
        if courier.unposted():
            courier.wait_posted(self.options.request_timeout)
        # No long poll while a result awaits its post or a lease its extensions: they
        # share this one connection, and a lease not extended in time is lost.
        wait = 0.0 if courier.unposted() or courier.holding() else self.options.wait
        courier.lease(self.lease_request(), wait)
        return courier.next_job(0.0)

    def accept(self, offer: LeaseOffer) -> LeaseOffer:
        """The offer if this seller may run it; BadReply naming why not otherwise."""
        if offer.memory_bytes > self.max_memory:
            raise BadReply(f"job {offer.job} wants more memory than this seller accepts")
        if offer.cpu_seconds > self.order.max_cpu_seconds:
            raise BadReply(f"job {offer.job} wants more CPU time than this order accepts")
        if offer.output_bytes > self.max_output:
            # Its output, in flight, would take the seller past its memory plan.
            raise BadReply(
                f"job {offer.job} may write {offer.output_bytes} bytes, more than this "
                f"seller's {self.max_output}"
            )
        return offer

    def program(self, offer: LeaseOffer) -> bytes:
        """The leased job's program, from the cache or the market, checked by sha256."""
        cached = self.cache.get(offer.program_sha256)
        if cached is not None:
            return cached
        _, program = self.client.request(
            "GET",
            f"/v1/programs/{offer.program_sha256}",
            cap=offer.program_size,
            timeout=self.options.request_timeout,
        )
        if hashlib.sha256(program).hexdigest() != offer.program_sha256:
            raise BadReply(f"program {offer.program_sha256[:16]}... does not match its sha256")
        self.cache.put(offer.program_sha256, program)
        return program

    def limits(self, offer: LeaseOffer) -> Limits:
        """The jail's limits for `offer`'s job; BadReply if they are impossible."""
        key = (offer.cpu_seconds, offer.wall_seconds, offer.memory_bytes, offer.output_bytes)
        if self._limits is not None and self._limits[0] == key:
            return self._limits[1]
        try:
            limits = Limits.for_job(offer.limits, nice=self.nice)
        except ValueError as exc:
            raise BadReply(f"job {offer.job} has impossible limits: {exc}") from None
        self._limits = (key, limits)
        return limits

    def work(self, offer: LeaseOffer, courier: Courier) -> None:
        """Run one leased job, its lease extended and the queue behind it kept filled,
        and hand its result to the courier."""
        self.lines.leased(offer.job)
        self.running = offer
        try:
            fetch = self.options.request_timeout
            self._running(offer)
            courier.lease_ahead(self.lease_request())
            # The outputs awaiting their post and this one's stay within two jobs' worth.
            courier.make_room(offer.output_bytes, 2 * self.max_output, fetch)
            program = self.program(offer)
            limits = self.limits(offer)
            if self.jail is None:
                self.jail = Jail.find(self.options.loader)
            prepared = self.cache.prepared(offer.program_sha256, program, limits)
            if not self.lines.done:  # the first job: its program fetched, the jail found
                courier.starts_now(offer)
            result = run_prepared(prepared, offer.input, limits, self.jail)
        except (BadReply, Unreachable, Refused, JailError):
            # This seller will not run it: the job goes back to the queue now.
            courier.drop(offer)
            courier.release(offer)
            self.running = None
            raise
        self.lines.finished(
            offer.job, result.outcome.value, result.cpu_seconds, last=not courier.queued()
        )
        courier.deliver(offer, result)
        self.running = None

    def _recorded(self, acknowledged: list[tuple[JobResult, Recorded]]) -> None:
        """The courier's word that the market acknowledged these results (one status
        write for them all, or none: see _written_soon)."""
        with self.status.lock:
            value = self.status.value
            changes = {
                "market_seen": round(boottime(), 1),
                "jobs_done": value("jobs_done") + len(acknowledged),
                "cpu_seconds": round(
                    value("cpu_seconds") + sum(r.cpu_seconds for r, _ in acknowledged), 3
                ),
                "coins": round(value("coins") + sum(a.coins for _, a in acknowledged), 3),
            }
            if self._written_soon():
                self.status.note(**changes)
            else:
                self.status.update(**changes)

    def _written_soon(self) -> bool:
        """Whether the job loop writes the status file soon anyway: it runs a job, and
        jobs are tiny (a mean below TINY_JOB_SECONDS), so the next starts within moments
        and writes what is noted once RUNNING_WRITES seconds passed since the last
        write (see _running), or its next state does. Under emulation a write costs
        the courier milliseconds at each post of a few results; a long job's results
        posted while it runs are written at once."""
        courier = self.courier
        job = None if courier is None else courier.job_seconds
        return self.running is not None and job is not None and job < TINY_JOB_SECONDS

    def _settle(self) -> None:
        """On the way out (or to a new identity): stop the courier, hand back the leases
        not run (the running one's too), and post the results still held, on a fresh
        connection (the seller's own may have been cut mid-request)."""
        if self.courier is None:
            return
        left = self.courier.close()
        self.courier = None
        if self.running is not None and not any(
            isinstance(item, LeaseOffer) and item.lease == self.running.lease for item in left
        ):
            left.append(self.running)
        self.running = None
        offers = [item for item in left if isinstance(item, LeaseOffer)]
        unposted = [item for item in left if isinstance(item, Unposted)]
        client = self._client(RELEASE_TIMEOUT, exchange=RELEASE_TIMEOUT)
        try:
            for offer in offers:
                self.release(client, offer)
            if unposted:
                self.post_on_the_way_out(client, unposted)
        finally:
            client.close()

    def release(self, client: MarketClient, offer: LeaseOffer) -> None:
        """Tell the market this lease's job is not coming."""
        try:
            client.request_json("POST", f"/v1/leases/{offer.lease}/release", {})
        except (Unreachable, Refused, BadReply) as exc:
            self._error("release", exc)
            return
        emit(
            "lease-released",
            self.stream,
            order=self.order.order_id,
            job=offer.job,
            lease=offer.lease,
        )

    def post_on_the_way_out(self, client: MarketClient, unposted: list[Unposted]) -> None:
        """One last try at the results still held; each one not acknowledged is said."""
        body = results_body([(u.offer.lease, u.result) for u in unposted])
        try:
            doc = client.request_json("POST", "/v1/results", body)
            answers = parse_recorded_batch(doc, [u.offer.lease for u in unposted])
        except (Unreachable, Refused, BadReply) as exc:
            for u in unposted:
                say_unposted(self.stream, self.order.order_id, u, exc)
            return
        acknowledged = []
        for u in unposted:
            answer = answers[u.offer.lease]
            if isinstance(answer, Recorded):
                acknowledged.append((u.result, answer))
            else:
                say_unposted(self.stream, self.order.order_id, u, answer)
        if acknowledged:
            self._recorded(acknowledged)
