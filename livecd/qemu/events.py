"""The guest's `cpushare:` console lines as events, and waiting for them.

`cpushare.console.parse_line` owns the line format; this is the host's one reader of it.
Every wait is in guest seconds, scaled by LIVECD_TIMEOUT_FACTOR for slow machines.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from cpushare.console import parse_line
from livecd.qemu.guest import Guest, scaled


@dataclass(frozen=True)
class Event:
    """A `cpushare:` console line and when the host read it (seconds since QEMU started)."""

    event: str
    fields: Mapping[str, str]
    host_seconds: float

    @classmethod
    def parse(cls, text: str, host_seconds: float = 0.0) -> Event | None:
        """The event on a console line, or None if the line carries none."""
        fields = parse_line(text)
        if fields is None:
            return None
        return cls(fields.get("event", "?"), fields, host_seconds)

    @property
    def uptime(self) -> float | None:
        """The guest's uptime when it printed the line."""
        try:
            return float(self.fields["uptime"])
        except (KeyError, ValueError):
            return None

    def matches(self, name: str, fields: Mapping[str, str]) -> bool:
        return self.event == name and all(self.fields.get(k) == v for k, v in fields.items())


def events_in(lines: Iterable[str]) -> list[Event]:
    """The events in console lines read after the fact (a log file, a captured stdout)."""
    return [e for e in (Event.parse(line) for line in lines) if e is not None]


class ConsoleEvents:
    """The events of a running guest's console, in the order it printed them."""

    def __init__(self, guest: Guest) -> None:
        self.guest = guest
        self.events: list[Event] = []

    def next(self, timeout: float) -> Event | None:
        """The next event within `timeout` (scaled), or None when the time is up or the
        guest's console ended."""
        return self._next_within(scaled(timeout))

    def _next_within(self, host_seconds: float) -> Event | None:
        deadline = time.monotonic() + host_seconds
        while True:
            line = self.guest.next_line(deadline - time.monotonic())
            if line is None:
                return None
            if event := Event.parse(line.text, line.host_seconds):
                self.events.append(event)
                return event

    def until(self, done: Callable[[list[Event]], bool], timeout: float) -> bool:
        """Read events until `done(events)` holds (True), the guest is gone or `timeout`
        (scaled) passed (False). `done` is asked again at least twice a second, so it
        may look beyond the console (e.g. at the market)."""
        deadline = time.monotonic() + scaled(timeout)
        while not done(self.events):
            left = deadline - time.monotonic()
            if left <= 0 or not self.guest.running:
                return False
            self._next_within(min(left, 0.5))
        return True

    def wait(self, name: str, timeout: float, *, skip: int = 0, **fields: str) -> Event | None:
        """Event `name` with these `fields`, the first after `skip` such events, already
        seen or within `timeout` (scaled); None if it did not come."""
        if self.until(lambda _: len(self.find(name, **fields)) > skip, timeout):
            return self.find(name, **fields)[skip]
        return None

    def drain(self) -> None:
        """Take the events QEMU printed before its console ended (after a power-off)."""
        while self.next(1.0) is not None:
            pass

    def find(self, name: str, **fields: str) -> list[Event]:
        return [e for e in self.events if e.matches(name, fields)]

    def first(self, name: str) -> Event | None:
        return next((e for e in self.events if e.event == name), None)

    def uptime_at(self, wall: float) -> float | None:
        """The guest's uptime at host wall-clock time `wall`. A line reaches the host
        after the guest printed it, never before: the smallest gap between the host's
        reading time and the uptime the line carries is the best estimate of when the
        guest's clock started."""
        gaps = [e.host_seconds - e.uptime for e in self.events if e.uptime is not None]
        if not gaps:
            return None
        return wall - self.guest.started_wall - min(gaps)

    def wall_of(self, event: Event) -> float:
        """The host's wall-clock time when it read `event`."""
        return self.guest.started_wall + event.host_seconds
