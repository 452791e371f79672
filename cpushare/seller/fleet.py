"""`python3 -m cpushare.seller.fleet RUNDIR`: the live CD's sellers, started and kept alive.

`/etc/init.d/cpushare start` runs it once, as root. It checks strict seccomp and picks
the orders (cpushare.startup), plans memory (cpushare.seller.plan), then forks one seller
per seat from this one warm process: the modules are imported once and shared
copy-on-write, so a seller costs a few MB rather than a whole interpreter, and a restart
costs no start-up. Meanwhile it enrolls this machine with the market once per order
(cpushare.seller.host; seats = the order's sellers), in a child running as the
unprivileged user, for as long as the market takes; each seller waits for its host
identity and seat on a pipe of its own. A lone seller (one seat: a machine with one CPU)
enrolls the machine itself, in a thread beside its start, instead of that child: one
interpreter fewer while the market is awaited (its copied pages, about 2.8 MiB). Each
seller drops to the unprivileged user before it touches the network. The fleet restarts
a seller that dies (with a back-off) but not one the market revoked (exit EXIT_REVOKED),
replaces one whose status file went stale (hung), and on SIGTERM stops them all: they
hand their leases back. Killed itself, it leaves none behind: each seller (and the
enrolling child) watches the fleet's lifeline (cpushare.seller.lifeline) and stops when
it breaks.
"""

from __future__ import annotations

import gc

if __name__ == "__main__":
    # The live CD's fleet (`python3 -m`): no cyclic collection while it imports and
    # starts, which makes few cycles and none that must go before serve() collects and
    # freezes what the sellers share; it is turned on again there. (Under emulation the
    # collector's passes over the growing heap were ~5% of the imports' time.)
    gc.disable()

import contextlib
import os
import signal
import ssl
import sys
from pathlib import Path
from types import SimpleNamespace

from cpushare.arguments import Argument, parse
from cpushare.bootopts import int_option, read_kernel_options
from cpushare.console import emit
from cpushare.order import OrderError, SellOrder, load_order
from cpushare.record import fields, record, replace
from cpushare.screen import Painter
from cpushare.seller.agent import (
    EXIT_REVOKED,
    SELF_TEST_SECONDS,
    STOP_SECONDS,
    Seller,
    stop_on_signal,
)
from cpushare.seller.apart import ChildFailed, in_child
from cpushare.seller.host import Identity, write_identity
from cpushare.seller.lifeline import Lifeline
from cpushare.seller.options import SellerOptions, as_arguments, from_arguments
from cpushare.seller.plan import Plan, Seat, make_seats, mem_available, plan_sellers
from cpushare.seller.privileges import Enrollment, child_exit, drop_to, enroll_beside
from cpushare.seller.status import boottime, read_status
from cpushare.startup import BUILTIN, medium_orders, seccomp_works, valid_orders

WATCHED = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
TICK_SECONDS = 1.0
# A seller that keeps dying young waits longer and longer, up to this, between lives.
MAX_BACKOFF = 60.0
LONG_LIFE = 60.0
# The OOM killer takes jobs first (the loader sets theirs to 1000), the sellers last.
SELLER_OOM_SCORE_ADJ = -900


# Seller options the fleet sets itself, per fleet (from the plan) or per seat.
FLEET_DECIDES = frozenset(
    {
        "status_dir",
        "memory_cap",
        "output_cap",
        "program_cache",
        "queue_input",
        "cpu",
        "nice",
        "job_lines",
    }
)
# Each seller shows one job's console lines a second at most (cpushare.seller.joblines),
# every job's with `cpushare.jobs=all`.
JOB_LINES_SECONDS = 1.0


@record(frozen=True)
class FleetOptions:
    seller: SellerOptions  # every seller's, but its seat's cpu and nice; with a status_dir
    pid_dir: Path | None = None  # SEAT.pid for each running seller
    user: tuple[int, int] | None = None  # (uid, gid) the sellers run as
    hang_grace: float = 30.0  # past a seller's promise, before it counts as hung

    @property
    def status_dir(self) -> Path:
        assert self.seller.status_dir is not None
        return self.seller.status_dir


@record
class Occupant:
    """The seller process on a seat, or when the next one starts."""

    seat: Seat
    pid: int | None = None
    started: float = 0.0
    restart_at: float = 0.0
    backoff: float = 1.0
    hung: bool = False
    revoked: bool = False  # its seller exited EXIT_REVOKED: the seat stays empty
    handover: int | None = None  # the pipe its identity goes down, once enrolled


class Fleet:
    """Keeps one seller alive on every seat until SIGTERM."""

    def __init__(
        self,
        seats: list[Seat],
        options: FleetOptions,
        screen: Painter | None = None,
        orders: dict[Path, SellOrder] | None = None,
    ) -> None:
        self.options = options
        # The seats' orders by their copy's path, read already; the others are read when
        # needed (the Debian package's fleet).
        self.orders = orders or {}
        self.screen = screen
        self.occupants = [Occupant(seat) for seat in seats]
        self.lifeline = Lifeline()
        self.identities: list[Identity | None] | None = None  # by seat, once enrolled
        self.enrollment: Enrollment | None = None

    def enroll(self) -> None:
        orders = [self.order(o.seat) for o in self.occupants]
        backoff_max = self.options.seller.backoff_max
        self.enrollment = Enrollment.start(self.options.user, orders, backoff_max, self.lifeline)

    def enrolls_itself(self) -> bool:
        """A lone seller enrolls the machine (`spawn`), until that fails once."""
        return len(self.occupants) == 1

    def order(self, seat: Seat) -> SellOrder:
        """The order of `seat`; OSError or OrderError if it had to be read and was not."""
        found = self.orders.get(seat.order_file)
        return load_order(seat.order_file) if found is None else found

    def collect_identities(self) -> None:
        """Once the enrollment is done, hand each waiting seller its identity."""
        if self.enrollment is None or self.identities is not None:
            return
        try:
            found = self.enrollment.poll()
        except ValueError as exc:
            emit("error", what="enroll", detail=f"{exc}; enrolling again")
            self.enroll()
            return
        if found is None:
            return
        self.identities = found
        for i, occupant in enumerate(self.occupants):
            if occupant.handover is not None:
                write_identity(occupant.handover, found[i])
                occupant.handover = None

    def run(self) -> int:
        signal.pthread_sigmask(signal.SIG_BLOCK, WATCHED)
        if not self.enrolls_itself():
            self.enroll()
        try:
            while True:
                self.collect_identities()
                self.start_due()
                if self.screen is not None:
                    self.screen.tick()
                info = signal.sigtimedwait(WATCHED, TICK_SECONDS)
                if info is not None and info.si_signo != signal.SIGCHLD:
                    self.stop_all()
                    return 0
                self.reap()
                if all(o.revoked for o in self.occupants):
                    return EXIT_REVOKED
                self.replace_hung()
        finally:
            if self.enrollment is not None:
                self.enrollment.cancel()
            for occupant in self.occupants:
                if occupant.handover is not None:
                    os.close(occupant.handover)
            self.lifeline.close()

    def start_due(self) -> None:
        now = boottime()
        for i, occupant in enumerate(self.occupants):
            if occupant.pid is None and not occupant.revoked and occupant.restart_at <= now:
                occupant.pid = self.spawn(i)
                occupant.started = now
                occupant.hung = False
                if self.options.pid_dir is not None:
                    write_pid(self.options.pid_dir / f"{occupant.seat.name}.pid", occupant.pid)

    def spawn(self, index: int) -> int:
        """Fork the seller of seat `index`; its identity follows on a pipe, now or once
        the machine is enrolled: by this seller itself when it is the lone one and nobody
        enrolls yet (it hands itself its identity at once; the fleet reads them from a
        pipe of their own, for the seller's successors)."""
        identity_fd, handover = os.pipe()
        enroll_fds: tuple[int, int] | None = None
        orders: list[SellOrder] = []
        if self.enrollment is None and self.identities is None:
            orders = [self.order(o.seat) for o in self.occupants]
            enroll_fds = os.pipe()
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:

            def sell() -> int:
                if enroll_fds is None:
                    os.close(handover)
                for other in self.occupants:  # nobody else's identity
                    if other.handover is not None:
                        os.close(other.handover)
                if self.enrollment is not None and self.enrollment.read_fd is not None:
                    os.close(self.enrollment.read_fd)
                enroll_fd = None
                if enroll_fds is not None:
                    os.close(enroll_fds[0])
                    enroll_fd = enroll_fds[1]
                seat = self.occupants[index].seat
                own = handover if enroll_fds is not None else None
                return self.seller_main(seat, identity_fd, enroll_fd, orders, own)

            child_exit(sell)
        os.close(identity_fd)
        if enroll_fds is not None:  # the seller hands itself its identity
            os.close(handover)
            os.close(enroll_fds[1])
            self.enrollment = Enrollment(pid, enroll_fds[0])
            return pid
        if self.identities is None:
            self.occupants[index].handover = handover
        else:
            write_identity(handover, self.identities[index])
        return pid

    def seller_main(
        self,
        seat: Seat,
        identity_fd: int,
        enroll_fd: int | None = None,
        orders: list[SellOrder] | None = None,
        handover: int | None = None,
    ) -> int:
        """In the child: become the unprivileged seller of `seat`, then serve; with
        `enroll_fd`, enroll the machine for `orders` beside (`enroll_beside`), its own
        identity down `handover`."""
        signal.signal(signal.SIGTERM, stop_on_signal)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        self.lifeline.in_child()
        if self.options.user is not None:
            drop_to(self.options.user)
        if enroll_fd is not None and handover is not None:
            # Started before the seller's nice level is set: on Linux that is the calling
            # thread's alone, so the enrollment runs at the fleet's, as a child's did (at
            # nice 19 the boot's own work kept it waiting: the first result came seconds
            # later).
            enroll_beside(enroll_fd, orders or [], self.options.seller.backoff_max, handover)
        os.setpriority(os.PRIO_PROCESS, 0, seat.nice)
        try:
            order = self.order(seat)
        except (OSError, OrderError) as exc:
            emit("error", what="order", file=seat.order_file.name, detail=str(exc))
            return 2
        options = replace(self.options.seller, cpu=seat.cpu, nice=seat.nice)
        # serve() checked the jail before any seller was forked: a seller does not again.
        seller = Seller(order, seat.order_file, options, identity_fd=identity_fd, jail_checked=True)
        return seller.run()

    def reap(self) -> None:
        """Collect dead sellers and schedule their successors."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self.enrollment is not None and pid == self.enrollment.pid:
                self.enrollment.reaped = True
            for occupant in self.occupants:
                if occupant.pid == pid:
                    self.schedule_restart(occupant, status)

    def schedule_restart(self, occupant: Occupant, status: int) -> None:
        occupant.pid = None
        if occupant.handover is not None:  # its successor gets a pipe of its own
            os.close(occupant.handover)
            occupant.handover = None
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) == EXIT_REVOKED:
            occupant.revoked = True  # it said so on the console and in its status file
            return
        now = boottime()
        if now - occupant.started >= LONG_LIFE:
            occupant.backoff = 1.0
        how = "hung and was replaced" if occupant.hung else _ended(status)
        emit(
            "error",
            what="seller",
            order=occupant.seat.name,
            detail=f"{how}; restarting in {occupant.backoff:g} s",
        )
        occupant.restart_at = now + occupant.backoff
        if now - occupant.started < LONG_LIFE:
            occupant.backoff = min(MAX_BACKOFF, occupant.backoff * 2)

    def replace_hung(self) -> None:
        """Kill sellers that broke their status file's promise: the job dies with them
        (its parent-death signal), and `reap` starts a new seller."""
        now = boottime()
        for occupant in self.occupants:
            if occupant.pid is None or occupant.hung:
                continue
            status = read_status(self.options.status_dir / f"{occupant.seat.name}.json")
            if status is not None and status.pid == occupant.pid:
                deadline = status.stale_after
            else:  # not a word yet from this seller
                deadline = occupant.started + SELF_TEST_SECONDS
            if deadline and now > deadline + self.options.hang_grace:
                occupant.hung = True
                os.kill(occupant.pid, signal.SIGKILL)

    def stop_all(self) -> None:
        """SIGTERM to every seller, time to hand leases back, then SIGKILL."""
        running = {o.pid for o in self.occupants if o.pid is not None}
        for pid in running:
            _signal(pid, signal.SIGTERM)
        deadline = boottime() + STOP_SECONDS
        while running and (left := deadline - boottime()) > 0:
            signal.sigtimedwait({signal.SIGCHLD}, left)
            running -= _reaped()
        for pid in running:
            _signal(pid, signal.SIGKILL)
        while running:
            running -= {os.waitpid(pid, 0)[0] for pid in running}


def say_state(rundir: Path, text: str) -> None:
    """The fleet's state in one line, in RUNDIR/state, for the status screen."""
    tmp = rundir / ".state.tmp"
    tmp.write_text(text + "\n")
    tmp.replace(rundir / "state")


def write_pid(path: Path, pid: int) -> None:
    """`path` holds `pid`, replaced whole: a reader never sees half a number."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(f"{pid}\n")
    tmp.replace(path)


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _reaped() -> set[int]:
    gone: set[int] = set()
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return gone
        if pid == 0:
            return gone
        gone.add(pid)


def _ended(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exited with status {os.waitstatus_to_exitcode(status)}"


def protect_from_oom() -> None:
    """Sellers last for the OOM killer: set here, as root, and inherited by each seller."""
    try:
        Path("/proc/self/oom_score_adj").write_text(f"{SELLER_OOM_SCORE_ADJ}\n")
    except OSError as exc:  # not root, or a container without CAP_SYS_RESOURCE
        emit("error", what="oom-protection", detail=f"sellers stay unprotected: {exc.strerror}")


def read_orders(rundir: Path, orders_dir: Path | None) -> tuple[str, list[tuple[Path, SellOrder]]]:
    """`choose_orders`, with the orders read, in a child (cpushare.seller.apart): the TOML
    parser never loads in the fleet, whose memory every seller shares."""

    def work() -> object:
        source, valid = choose_orders(rundir, orders_dir)
        read = []
        for path, _ in valid:
            order = load_order(path)
            read.append([str(path), {f.name: getattr(order, f.name) for f in fields(order)}])
        return [source, read]

    source, valid = in_child(work)
    return source, [(Path(path), SellOrder(**given)) for path, given in valid]


def choose_orders(rundir: Path, orders_dir: Path | None) -> tuple[str, list[tuple[Path, int]]]:
    """Where the orders come from and the valid ones: `orders_dir` if given, else the
    CPUSHARE medium's, else the built-in ones."""
    if orders_dir is not None:
        return "directory", valid_orders(sorted(orders_dir.glob("*.cpu")))
    on_medium = medium_orders(rundir)
    if on_medium:
        return "medium", valid_orders(on_medium)
    return "builtin", valid_orders(sorted(BUILTIN.glob("*.cpu")))


def announce_plan(plan: Plan) -> None:
    emit(
        "memory",
        available_mb=plan.available >> 20,
        sellers=plan.sellers,
        wanted=plan.wanted,
        job_memory_mb=plan.job_memory_bytes >> 20,
        job_output_mb=plan.job_output_bytes >> 20,
        program_cache_mb=plan.program_cache_bytes >> 20,
        queue_input_kb=plan.queue_input_bytes >> 10,
    )


def _user(text: str) -> tuple[int, int]:
    uid, _, gid = text.partition(":")
    try:
        return int(uid), int(gid or uid)
    except ValueError:
        raise ValueError(f"{text!r} is not UID:GID") from None


def _arguments(argv: list[str] | None) -> SimpleNamespace:
    # Not argparse: see cpushare.arguments.
    return parse(
        "python3 -m cpushare.seller.fleet",
        "Check the jail, pick the orders, run and supervise the sellers.",
        [
            Argument("rundir", Path, "order copies and status files go here", positional=True),
            Argument("user", _user, "run the sellers as UID:GID", metavar="UID:GID"),
            Argument("orders", Path, "take the orders from this directory", metavar="PATH"),
            Argument(
                "screen",
                Path,
                "paint the status screen for this terminal into RUNDIR/screen",
                metavar="TTY",
            ),
            Argument("cmdline", Path, "the kernel options", Path("/proc/cmdline"), metavar="PATH"),
            *as_arguments(skip=FLEET_DECIDES),
            Argument(
                "hang_grace",
                float,
                "seconds past a seller's promised status update before it counts as hung",
                30.0,
                metavar="SECONDS",
            ),
        ],
        argv,
    )


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    args.rundir.mkdir(parents=True, exist_ok=True)
    pidfile = args.rundir / "fleet.pid"
    write_pid(pidfile, os.getpid())
    try:
        return serve(args)
    finally:
        pidfile.unlink(missing_ok=True)
        for seat_pid in args.rundir.glob("*.pid"):
            seat_pid.unlink()


def job_lines(options: dict[str, str]) -> float:
    """Seconds between the job lines a seller shows, from `cpushare.jobs=all|some`."""
    given = options.get("jobs", "some")
    if given not in ("all", "some"):
        emit("error", what="option", detail=f"cpushare.jobs={given} is not all or some: ignored")
    return 0.0 if given == "all" else JOB_LINES_SECONDS


def share_with_sellers() -> None:
    """Everything imported and built so far is shared with the sellers; frozen, the
    collector never writes to it, so the pages stay shared. Garbage goes first. The
    collector, off since the start (`python3 -m`), is on again for the fleet and its
    sellers."""
    gc.collect()
    gc.freeze()
    gc.enable()


def serve(args: SimpleNamespace) -> int:
    """Check, plan and run the sellers until SIGTERM; 1 without seccomp, 2 without orders."""
    options = read_kernel_options(args.cmdline)
    screen = Painter(args.rundir, args.screen) if args.screen else None

    def state(text: str) -> None:
        say_state(args.rundir, text)
        if screen is not None:
            screen.paint()

    state("checking the jail and the orders")
    if not seccomp_works(options.get("selftest") == "fail"):
        state("not selling: strict seccomp does not work on this machine")
        return 1
    try:
        source, orders = read_orders(args.rundir, args.orders)
    except ChildFailed as exc:
        source, orders = "unreadable", []
        emit("error", what="orders", detail=f"cannot read the orders: {exc}")
    emit("orders", source=source, count=len(orders))
    if not orders:
        emit("error", what="sellers", detail="no valid order: no seller started")
        state(f"not selling: no valid order ({source})")
        return 2
    wanted = int_option(options, "sellers", 1, 1024) or len(os.sched_getaffinity(0))
    plan = plan_sellers(mem_available(), wanted)
    announce_plan(plan)
    nice = int_option(options, "nice", 0, 19)
    seats = make_seats(
        [(path, order.nice) for path, order in orders], plan.sellers, args.rundir / "orders", nice
    )
    by_source = dict(orders)
    seat_orders = {s.order_file: by_source[s.source] for s in seats if s.source is not None}
    status_dir = args.rundir / "status"
    status_dir.mkdir(parents=True, exist_ok=True)
    if args.user is not None:
        os.chown(status_dir, *args.user)
    protect_from_oom()
    seller = SellerOptions(
        status_dir=status_dir,
        memory_cap=plan.job_memory_bytes,
        output_cap=plan.job_output_bytes,
        program_cache=plan.program_cache_bytes,
        queue_input=plan.queue_input_bytes,
        job_lines=job_lines(options),
    )
    fleet_options = FleetOptions(
        seller=from_arguments(args, seller),
        pid_dir=args.rundir,
        user=args.user,
        hang_grace=args.hang_grace,
    )
    state(
        f"selling: {plan.sellers} seller(s), orders from {source}, "
        f"jobs up to {plan.job_memory_bytes >> 20} MiB"
    )
    # OpenSSL fills its global tables at its first context (about 0.3 MB): filled here,
    # every seller and the enrolling child share them instead of filling their own.
    ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    share_with_sellers()
    code = Fleet(seats, fleet_options, screen, seat_orders).run()
    if code == EXIT_REVOKED:
        state("not selling: the market revoked this machine")
    else:
        state("stopped")
    return code


if __name__ == "__main__":
    sys.exit(main())
