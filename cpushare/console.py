"""The `cpushare:` console lines: one line per milestone, `key=value` fields.

Every milestone of the live system prints one line that starts with `cpushare:`, then
`event=NAME`, then fields, then `uptime=SECONDS` (guest uptime from /proc/uptime). The
smoke test, CI and volunteers read these lines; docs/live-cd.md lists the events. The shell
side (`/init`, `/etc/init.d/cpushare`) prints the same format with its `say` function.
"""

from __future__ import annotations

import re
import sys
import time
import unicodedata

_BARE = re.compile(r"[A-Za-z0-9_./:@+,%=-]+")
_PAIR = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')
# Terminal escape sequences (CSI, as ESC [ or C1 0x9b, up to its final byte; OSC up to its
# terminator; any other ESC with the byte after it): dropped whole, so that none of their
# parameters is left looking like text.
_ESCAPE = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
    r"|(?:\x1b\]|\x9d)[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b.?",
    re.DOTALL,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import TextIO
# Controls (C0, DEL, C1), format characters (bidi overrides, zero-width), line or
# paragraph separators, and lone surrogates (which no console encoding can print): each
# becomes one space.
_UNSAFE = frozenset(("Cc", "Cf", "Zl", "Zp", "Cs"))
MARKER = "cpushare: "
# The longest value printed: a market's error text has no business filling a console.
MAX_VALUE_CHARS = 1000


def uptime() -> float | None:
    """Seconds since boot (the clock /proc/uptime shows), or None where there is none."""
    # The clock /proc/uptime reads, without opening it: a seller says two lines a job.
    try:
        return time.clock_gettime(time.CLOCK_BOOTTIME)
    except (AttributeError, OSError):  # not Linux
        return None


def clean(text: str) -> str:
    """`text` safe to show on a terminal: escape sequences dropped, every other control,
    format or line-separator character a space."""
    if text.isascii() and text.isprintable():
        return text  # the common case: nothing to drop, no character to look up
    text = _ESCAPE.sub("", text)
    return "".join(" " if unicodedata.category(ch) in _UNSAFE else ch for ch in text)


def _quote(value: object) -> str:
    if type(value) is int:  # job numbers, pids: digits alone, nothing to check
        text = str(value)
        if len(text) <= MAX_VALUE_CHARS:
            return text
    text = f"{value:.2f}" if isinstance(value, float) else str(value)
    text = clean(text)
    if len(text) > MAX_VALUE_CHARS:
        text = text[: MAX_VALUE_CHARS - 3] + "..."
    # Within one line the reader takes the first marker, but a grep counts every one.
    text = text.replace(MARKER, "cpushare; ")
    if text and _BARE.fullmatch(text):
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def format_line(event: str, **fields: object) -> str:
    """`cpushare: event=NAME k=v ...`; values with spaces or quotes are double-quoted.
    Every value is made safe first (`clean`, at most MAX_VALUE_CHARS, no second marker),
    so that text from a market or a medium always yields one well-formed line."""
    parts = [f"event={event}"]
    parts += [f"{key}={_quote(value)}" for key, value in fields.items() if value is not None]
    return MARKER + " ".join(parts)


def emit(event: str, stream: TextIO | None = None, **fields: object) -> None:
    """Print one console line, with the guest uptime, and flush it at once. The line and
    its newline go out in one write: sellers share their console, and an unbuffered
    stream would otherwise let another process's line land between the two."""
    fields.setdefault("uptime", uptime())
    out = stream or sys.stdout
    out.write(format_line(event, **fields) + "\n")
    out.flush()


def emitter(event: str, stream: TextIO | None = None, **fixed: object) -> Callable[..., None]:
    """`emit(event, stream, **fixed, **fields)`, the same line, with the `fixed` fields
    made safe and formatted once: for the lines a seller says at every job."""
    prefix = format_line(event, **fixed)

    def say(**fields: object) -> None:
        fields.setdefault("uptime", uptime())
        text = "".join(
            f" {key}={_quote(value)}" for key, value in fields.items() if value is not None
        )
        out = stream or sys.stdout
        out.write(prefix + text + "\n")
        out.flush()

    return say


def parse_line(line: str) -> dict[str, str] | None:
    """Fields of a `cpushare:` line found anywhere in `line`, or None if there is none."""
    start = line.find(MARKER + "event=")
    if start < 0:
        return None
    fields: dict[str, str] = {}
    for key, raw in _PAIR.findall(line[start + len(MARKER) :]):
        if raw.startswith('"'):
            raw = raw[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        fields[key] = raw
    return fields


def events_in(text: str, event: str | None = None, **fields: str) -> list[dict[str, str]]:
    """The fields of every `cpushare:` line in `text` (a log, a captured output), in order;
    only those of `event`, and with the given field values, when asked."""
    found = (parse_line(line) for line in text.splitlines())
    return [
        f
        for f in found
        if f is not None
        and (event is None or f["event"] == event)
        and all(f.get(k) == v for k, v in fields.items())
    ]
