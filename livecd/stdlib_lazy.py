"""Imports of the image's standard library made lazy where only a function no seller
calls needs them: the fleet's modules stay in the live system's memory for good, and
the boot imports on its way to the first sale.

pathlib imports urllib.parse at its start, for `as_uri` alone, and urllib.parse imports
ipaddress: in the fleet they held 0.47 MiB (anonymous memory, measured in the guest at
128 MiB). The image's pathlib imports it when a URI is made.

urllib.parse imports ipaddress at its start, for a bracketed host alone (an IPv6
address in a URL): the child of the fleet that checks the orders imports urllib.parse for
the market's URL, and ipaddress was 22 ms of guest time there under emulation (icount),
on the way to the first sale. The image's urllib.parse imports it for such a host.

Each line is replaced as it is: should Debian's module change, the build stops in one
line naming it."""

from __future__ import annotations

from collections.abc import Iterable

from diskformats.cpio import Entry
from livecd.errors import BuildError
from livecd.python_runtime import STDLIB

# path in the image -> [(the line, or its start, and what replaces it)]
LAZY = {
    f"{STDLIB}/pathlib.py": [
        (
            b"from urllib.parse import quote_from_bytes as urlquote_from_bytes\n",
            b"def urlquote_from_bytes(string):  # made lazy by the live CD's builder\n"
            b"    from urllib.parse import quote_from_bytes\n"
            b"    return quote_from_bytes(string)\n",
        ),
    ],
    f"{STDLIB}/urllib/parse.py": [
        (b"import ipaddress\n", b"# import ipaddress: made lazy by the live CD's builder\n"),
        (
            b"        ip = ipaddress.ip_address(hostname)",
            b"        import ipaddress  # made lazy by the live CD's builder\n"
            b"        ip = ipaddress.ip_address(hostname)",
        ),
    ],
}


def lazy(entries: Iterable[Entry]) -> list[Entry]:
    """`entries` with the modules of LAZY rewritten (their lines replaced); BuildError in
    one line if a module is there without one of its lines."""
    out = []
    for e in entries:
        changes = LAZY.get(e.path)
        if changes is None:
            out.append(e)
            continue
        source = e.source.read_bytes() if e.source else e.data
        for line, replacement in changes:
            if source.count(line) != 1:
                raise BuildError(
                    f"/{e.path} has no line {line.decode().strip()!r} to make lazy: "
                    "livecd/stdlib_lazy.py must follow its new version"
                )
            source = source.replace(line, replacement)
        out.append(Entry(e.path, e.mode, data=source))
    return out
