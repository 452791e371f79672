"""What a boot run found: its milestones and problems, the power-off, and for a sale the
figures; the one classifier of what the guest reported as wrong; one table, one JSON."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from livecd.qemu.events import Event
from livecd.qemu.guest import Guest

# Errors that say the market cannot be reached: expected where no market runs (the guest's
# network reaches nothing) or before the guest has an address, and survived by the sellers.
MARKET_ABSENT = frozenset({"market-unreachable"})
# Shown in the table every time they come; of the other events only the first.
MILESTONES = ("init", "secureboot", "network", "seccomp", "orders", "seller-started", "error")


@dataclass
class SaleFigures:
    """The figures of a sale: the jobs queued and accepted, when (guest uptime), how fast
    (from the first lease to the last accepted result), and the coins earned."""

    jobs: int
    accepted: int = 0
    first_result_uptime: float | None = None
    last_result_uptime: float | None = None
    jobs_per_minute: float | None = None
    coins: float = 0.0
    account: str = ""  # the account credited the coins


@dataclass
class Report:
    milestones: list[Event] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    wall_seconds: float = 0.0
    powered_off: bool = False
    sale: SaleFigures | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def first(self, event: str) -> Event | None:
        return next((m for m in self.milestones if m.event == event), None)


def console_problems(
    events: Sequence[Event],
    *,
    secure_boot: bool = False,
    market_reachable: bool = True,
    from_medium: bool = True,
) -> list[str]:
    """What the guest itself reported as wrong: a failed self-test, Secure Boot not
    enforced where it should be, errors (but the market out of reach while the guest had
    no address yet, or at all where no market runs), failed jobs, and, with `from_medium`,
    orders that did not come from the CPUSHARE medium."""
    problems = []
    network_up = False
    for e in events:
        network_up = network_up or e.event == "network"
        if e.event == "seccomp" and e.fields.get("status") != "verified":
            problems.append(f"the seccomp self-test failed: {e.fields.get('reason', '?')}")
        elif e.event == "secureboot" and secure_boot and e.fields.get("state") != "enforced":
            problems.append(f"Secure Boot was not enforced (state={e.fields.get('state')})")
        elif (
            e.event == "error"
            and e.fields.get("what") in MARKET_ABSENT
            and not (network_up and market_reachable)
        ):
            continue  # a seller that starts before DHCP is done retries once it is
        elif e.event == "error":
            problems.append(
                f"the guest reported an error: {e.fields.get('what')}: {e.fields.get('detail', '')}"
            )
        elif e.event == "job-finished" and e.fields.get("status") != "ok":
            problems.append(f"job {e.fields.get('job')} finished {e.fields.get('status')}")
    if from_medium:
        orders = [e for e in events if e.event == "orders"]
        if not orders or orders[0].fields.get("source") != "medium":
            problems.append("the guest did not take its orders from the CPUSHARE medium")
    return problems


def crash_problems(guest: Guest) -> list[str]:
    """A Python traceback on the console: something in the live system crashed. The
    problem names the exception (the traceback's first unindented line)."""
    texts = [line.text for line in guest.lines]
    for i, text in enumerate(texts):
        if text.startswith("Traceback (most recent call last)"):
            last = next((t for t in texts[i + 1 :] if t and not t.startswith(" ")), "?")
            return [f"the guest printed a Python traceback ending in: {last}"]
    return []


def refused(events: Sequence[Event]) -> bool:
    """The guest said it sells nothing: strict seccomp failed, or no order was valid."""
    return any(
        (e.event == "error" and e.fields.get("what") == "sellers")
        or (e.event == "orders" and e.fields.get("count") == "0")
        for e in events
    )


def power_off(guest: Guest, report: Report, timeout: float) -> None:
    """Press the ACPI power button and record whether the guest powered off, and when."""
    report.powered_off = guest.power_button(timeout)
    if not report.powered_off:
        report.problems.append("the guest did not power off on the ACPI power button")
    report.wall_seconds = guest.elapsed


def exited_early(guest: Guest) -> str:
    """The problem of a run whose QEMU is gone before it ended, with what QEMU said."""
    return f"QEMU exited early: {guest.stderr or 'no message'}"


def end_run(guest: Guest, report: Report, power_off_timeout: float) -> None:
    """A run's last checks: a Python traceback on the console (crash_problems), then the
    power button (power_off); a run with problems names its console log last."""
    report.problems += crash_problems(guest)
    power_off(guest, report, power_off_timeout)
    if report.problems:
        report.problems.append(f"console log: {guest.log_path}")


def format_report(report: Report, echo: Callable[[str], None]) -> None:
    """The milestones with guest uptime and host wall time, then for a sale the guest
    uptime at the first and last accepted result and the figures, then the power-off."""
    echo(f"{'milestone':<15} {'uptime':>8} {'wall':>8}  details")
    seen: set[str] = set()
    for e in report.milestones:
        if e.event in seen and e.event not in MILESTONES:
            continue
        seen.add(e.event)
        details = " ".join(f"{k}={v}" for k, v in e.fields.items() if k not in ("event", "uptime"))
        up = f"{e.uptime:7.2f}s" if e.uptime is not None else "       -"
        echo(f"{e.event:<15} {up:>8} {e.host_seconds:7.2f}s  {details}")
    if (sale := report.sale) is not None:
        for label, uptime in (
            ("first result", sale.first_result_uptime),
            ("last result", sale.last_result_uptime),
        ):
            if uptime is not None:
                echo(f"{label:<15} {uptime:7.2f}s {'':>8}  accepted by the market")
        rate = f"{sale.jobs_per_minute:.1f}" if sale.jobs_per_minute else "-"
        echo(
            f"jobs: {sale.accepted}/{sale.jobs} accepted; {rate} jobs per minute; "
            f"{sale.coins:.3f} coins credited to {sale.account}"
        )
    echo(
        f"power off: {'clean' if report.powered_off else 'FAILED'} "
        f"after {report.wall_seconds:.1f} s"
    )


def report_json(report: Report) -> dict[str, object]:
    """The report for machines: the same keys for every run (a run without a sale has no
    jobs and no figures)."""
    sale = report.sale or SaleFigures(jobs=0)
    return {
        "ok": report.ok,
        "problems": report.problems,
        "jobs": sale.jobs,
        "accepted": sale.accepted,
        "first_result_uptime": sale.first_result_uptime,
        "last_result_uptime": sale.last_result_uptime,
        "jobs_per_minute": sale.jobs_per_minute,
        "coins": sale.coins,
        "wall_seconds": report.wall_seconds,
        "powered_off": report.powered_off,
        "milestones": [
            {"event": e.event, "fields": dict(e.fields), "wall": e.host_seconds}
            for e in report.milestones
        ],
    }
