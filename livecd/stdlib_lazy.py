"""Imports of the image's standard library made lazy where only a function no seller
calls needs them: the fleet's modules stay in the live system's memory for good.

pathlib imports urllib.parse at its start, for `as_uri` alone, and urllib.parse imports
ipaddress: in the fleet they held 0.47 MiB (anonymous memory, measured in the guest at
128 MiB). The image's pathlib imports it when a URI is made. The line is replaced as it
is: should Debian's pathlib change, the build stops in one line naming it."""

from __future__ import annotations

from collections.abc import Iterable

from diskformats.cpio import Entry
from livecd.errors import BuildError
from livecd.python_runtime import STDLIB

# path in the image -> (the line, what replaces it)
LAZY = {
    f"{STDLIB}/pathlib.py": (
        b"from urllib.parse import quote_from_bytes as urlquote_from_bytes\n",
        b"def urlquote_from_bytes(string):  # made lazy by the live CD's builder\n"
        b"    from urllib.parse import quote_from_bytes\n"
        b"    return quote_from_bytes(string)\n",
    ),
}


def lazy(entries: Iterable[Entry]) -> list[Entry]:
    """`entries` with the modules of LAZY rewritten (their lines replaced); BuildError in
    one line if a module is there without its line."""
    out = []
    for e in entries:
        change = LAZY.get(e.path)
        if change is None:
            out.append(e)
            continue
        line, replacement = change
        source = e.source.read_bytes() if e.source else e.data
        if source.count(line) != 1:
            raise BuildError(
                f"/{e.path} has no line {line.decode().strip()!r} to make lazy: "
                "livecd/stdlib_lazy.py must follow its new version"
            )
        out.append(Entry(e.path, e.mode, data=source.replace(line, replacement)))
    return out
