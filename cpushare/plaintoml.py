"""The plain TOML an order is written in, read without tomllib.

Importing tomllib (with typing, datetime and its own regular expressions) is most of the
time the boot spends reading its orders: under emulation about 0.14 s of guest time,
on the way to the first sale. An order as `render_order` writes it uses a sliver of
TOML: comments, bare `[table]` headers, bare keys, basic strings without escapes,
decimal integers and literal multi-line strings (a CA's PEM). `loads` reads exactly that
and returns None for anything else (an escape, a float, a dotted key, a duplicate, a
carriage return...), which the caller then hands to tomllib: the same text always gives
the same document as tomllib's, or tomllib's own verdict.
"""

from __future__ import annotations

import re

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any

_KEY = r"[A-Za-z0-9_-]+"
# A comment: any character but the control ones TOML forbids in it (tab is allowed).
_COMMENT = r"(?:#[^\x00-\x08\x0a-\x1f\x7f]*)?"
_END = rf"[ \t]*{_COMMENT}"
_TABLE = re.compile(rf"\[({_KEY})\]{_END}")
_STRING = re.compile(rf'({_KEY})[ \t]*=[ \t]*"([^"\\\x00-\x08\x0a-\x1f\x7f]*)"{_END}')
_INTEGER = re.compile(rf"({_KEY})[ \t]*=[ \t]*([+-]?(?:0|[1-9][0-9]*)){_END}")
_LITERAL_START = re.compile(rf"({_KEY})[ \t]*=[ \t]*'''")
_BLANK = re.compile(_END)
# What a literal multi-line string may hold: no control characters but tab and newline,
# and never a quote (its end, ''' alone on a line, is then the first quote there is).
_LITERAL_TEXT = re.compile(r"[^'\x00-\x08\x0b-\x1f\x7f]*")


def loads(text: str) -> dict[str, Any] | None:
    """The document, if `text` is within the plain subset; None if it is not."""
    if "\r" in text:
        return None
    doc: dict[str, Any] = {}
    table = doc
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i].lstrip(" \t")
        i += 1
        if _BLANK.fullmatch(line):
            continue
        if found := _TABLE.fullmatch(line):
            if found[1] in doc:
                return None
            table = doc[found[1]] = {}
            continue
        if found := _STRING.fullmatch(line):
            key, value = found[1], found[2]
        elif found := _INTEGER.fullmatch(line):
            key, value = found[1], int(found[2])
        elif (found := _LITERAL_START.match(line)) and line[found.end() :] == "":
            # The text runs to a line that is ''' alone; the first newline is trimmed.
            try:
                end = lines.index("'''", i)
            except ValueError:
                return None
            key, value = found[1], "\n".join(lines[i:end])
            if end > i:
                value += "\n"
            if not _LITERAL_TEXT.fullmatch(value):
                return None
            i = end + 1
        else:
            return None
        if key in table:
            return None
        table[key] = value
    return doc
