"""The `cpushare:` console lines: one line per milestone, `key=value` fields.

Every milestone of the live system prints one line that starts with `cpushare:`, then
`event=NAME`, then fields, then `uptime=SECONDS` (guest uptime from /proc/uptime). The
smoke test, CI and volunteers read these lines; the README lists the events. The shell
side (`/init`, `/etc/init.d/cpushare`) prints the same format with its `say` function.
"""

from __future__ import annotations

import re
import sys
from typing import TextIO

_BARE = re.compile(r"[A-Za-z0-9_./:@+,%=-]+")
_PAIR = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')


def uptime() -> float | None:
    """Seconds since boot, or None where /proc/uptime cannot be read."""
    try:
        with open("/proc/uptime", encoding="ascii") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _quote(value: object) -> str:
    text = f"{value:.2f}" if isinstance(value, float) else str(value)
    if text and _BARE.fullmatch(text):
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")
    return f'"{escaped}"'


def format_line(event: str, **fields: object) -> str:
    """`cpushare: event=NAME k=v ...`; values with spaces or quotes are double-quoted."""
    parts = [f"event={event}"]
    parts += [f"{key}={_quote(value)}" for key, value in fields.items() if value is not None]
    return "cpushare: " + " ".join(parts)


def emit(event: str, stream: TextIO | None = None, **fields: object) -> None:
    """Print one console line, with the guest uptime, and flush it at once."""
    fields.setdefault("uptime", uptime())
    print(format_line(event, **fields), file=stream or sys.stdout, flush=True)


def parse_line(line: str) -> dict[str, str] | None:
    """Fields of a `cpushare:` line found anywhere in `line`, or None if there is none."""
    start = line.find("cpushare: event=")
    if start < 0:
        return None
    fields: dict[str, str] = {}
    for key, raw in _PAIR.findall(line[start + len("cpushare: ") :]):
        if raw.startswith('"'):
            raw = raw[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        fields[key] = raw
    return fields
