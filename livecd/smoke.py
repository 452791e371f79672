"""The smoke test: boot an ISO headless, wait for the `cpushare:` milestones on the serial
console, press the power button, and say what happened and when."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from cpushare.console import parse_line
from livecd.qemu import Guest, GuestConfig


@dataclass(frozen=True)
class Milestone:
    """A `cpushare:` console line and when the host read it (seconds since QEMU started)."""

    event: str
    fields: Mapping[str, str]
    host_seconds: float

    @property
    def uptime(self) -> float | None:
        try:
            return float(self.fields["uptime"])
        except (KeyError, ValueError):
            return None


@dataclass
class SmokeResult:
    milestones: list[Milestone] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    wall_seconds: float = 0.0
    powered_off: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems

    def first(self, event: str) -> Milestone | None:
        return next((m for m in self.milestones if m.event == event), None)


# Errors that say the market cannot be reached: expected when the smoke test runs no
# market (the guest's network reaches nothing), and survived by the sellers.
MARKET_ABSENT = frozenset({"market-unreachable"})


def expected_events(cfg: GuestConfig) -> list[str]:
    """The live system up, strict seccomp verified, and one seller per CPU started."""
    return ["init", "secureboot", "network", "seccomp", "orders", *["seller-started"] * cfg.cpus]


def _problem(m: Milestone, cfg: GuestConfig) -> str | None:
    if m.event == "error" and m.fields.get("what") not in MARKET_ABSENT:
        return f"the guest reported an error: {m.fields}"
    if m.event == "seccomp" and m.fields.get("status") == "failed":
        return f"seccomp check failed: {m.fields.get('reason', '?')}"
    if m.event == "secureboot" and cfg.secure_boot and m.fields.get("state") != "enforced":
        return f"Secure Boot was not enforced (state={m.fields.get('state')})"
    return None


def run_smoke(
    cfg: GuestConfig,
    log_path: Path,
    *,
    timeout: float = 120.0,
    expect: Sequence[str] | None = None,
    power_off_timeout: float = 30.0,
) -> SmokeResult:
    """Boot, collect milestones until every expected event was seen (or a problem or the
    timeout), then power off through the ACPI power button."""
    wanted = list(expect or expected_events(cfg))
    result = SmokeResult()
    with Guest(cfg, log_path) as guest:
        while wanted:
            line = guest.wait_for(lambda text: parse_line(text) is not None, timeout)
            if line is None:
                why = "QEMU exited" if guest.stderr or guest.elapsed < timeout else "timed out"
                result.problems.append(
                    f"{why} before: {', '.join(wanted)} (console log: {log_path})"
                    + (f"; QEMU said: {guest.stderr.splitlines()[-1]}" if guest.stderr else "")
                )
                break
            fields = parse_line(line.text) or {}
            m = Milestone(fields.get("event", "?"), fields, line.host_seconds)
            result.milestones.append(m)
            if problem := _problem(m, cfg):
                result.problems.append(problem)
                break
            if m.event in wanted:
                wanted.remove(m.event)
        power_off(guest, result, power_off_timeout)
    return result


class Finishing(Protocol):
    """What a boot test records when it ends: its problems, the power-off, its wall time."""

    problems: list[str]
    powered_off: bool
    wall_seconds: float


def power_off(guest: Guest, result: Finishing, timeout: float) -> None:
    """Press the ACPI power button and record whether the guest powered off, and when."""
    result.powered_off = guest.power_button(timeout)
    if not result.powered_off:
        result.problems.append("the guest did not power off on the ACPI power button")
    result.wall_seconds = guest.elapsed


def format_table(result: SmokeResult) -> str:
    """Milestones with guest uptime and host wall time, one per line."""
    rows = [f"{'milestone':<14} {'uptime':>8} {'wall':>8}  details"]
    for m in result.milestones:
        details = " ".join(f"{k}={v}" for k, v in m.fields.items() if k not in ("event", "uptime"))
        up = f"{m.uptime:7.2f}s" if m.uptime is not None else "       -"
        rows.append(f"{m.event:<14} {up:>8} {m.host_seconds:7.2f}s  {details}")
    rows.append(
        f"{'power off':<14} {'':>8} {result.wall_seconds:7.2f}s  "
        f"{'clean' if result.powered_off else 'FAILED'}"
    )
    return "\n".join(rows)
