"""CPython in the live system: Debian's python3.11 packages are unpacked like any other;
this module prunes the parts of the standard library, the shared libraries and the data
no seller uses, and makes the CA bundle that the ca-certificates package's maintainer
script would have made."""

from __future__ import annotations

import stat
from collections.abc import Iterable

from diskformats.cpio import Entry

STDLIB = "usr/lib/python3.11"
_REG = stat.S_IFREG | 0o644

# Standard library packages, modules and extensions no seller imports, and other files
# the live system never reads. Pruning keeps the initramfs small; pruning something the
# seller needs fails the boot tests at once.
_UNUSED_STDLIB = (
    "asyncio", "config-3.11-x86_64-linux-gnu", "ctypes", "curses", "dbm", "distutils",
    "ensurepip", "idlelib", "lib2to3", "multiprocessing", "pydoc_data", "sqlite3", "test",
    "tkinter", "turtledemo", "unittest", "venv", "wsgiref", "xmlrpc", "pydoc.py",
    "doctest.py", "turtle.py", "mailbox.py", "imaplib.py", "nntplib.py", "smtplib.py",
    "ftplib.py", "pdb.py", "_pydecimal.py", "_pyio.py", "pickletools.py", "tarfile.py",
    "zipfile.py", "lzma.py", "bz2.py", "html", "xml", "concurrent", "zoneinfo",
    "importlib/metadata", "importlib/resources", "site-packages", "dist-packages",
)  # fmt: skip
# The codecs the seller can meet (UTF-8 everywhere, ASCII and Latin-1 in HTTP, IDNA in
# host names); Python has the rest of the 120 only for text it never reads.
_KEPT_ENCODINGS = frozenset(
    f"{name}.py" for name in (
        "__init__", "aliases", "ascii", "latin_1", "utf_8", "utf_8_sig", "idna", "punycode",
        "raw_unicode_escape", "unicode_escape", "charmap", "utf_16", "utf_16_le",
        "utf_16_be", "utf_32", "utf_32_le", "utf_32_be",
    )
)  # fmt: skip
_UNUSED_EXTENSIONS = (
    "_ctypes", "_test", "_xx", "xxlimited", "_sqlite3", "_curses", "_dbm", "_decimal",
    "_bz2", "_lzma", "readline", "_codecs_", "audioop", "nis", "ossaudiodev",
)  # fmt: skip
_UNUSED_OTHER = (
    "usr/lib/x86_64-linux-gnu/gconv", "usr/lib/x86_64-linux-gnu/engines-3",
    "usr/lib/x86_64-linux-gnu/ossl-modules", "usr/share/ca-certificates", "usr/lib/python3",
    "usr/share/python3", "usr/share/binfmts", "usr/share/pixmaps", "usr/share/applications",
    "usr/lib/binfmt.d", "usr/lib/x86_64-linux-gnu/libexpatw.so.1",
    "usr/lib/x86_64-linux-gnu/libexpatw.so.1.8.10",
    *(f"lib/x86_64-linux-gnu/{lib}" for lib in (
        "libBrokenLocale.so.1", "libanl.so.1", "libc_malloc_debug.so.0", "libmemusage.so",
        "libmvec.so.1", "libnsl.so.1", "libnss_compat.so.2", "libnss_hesiod.so.2",
        "libpcprofile.so", "libthread_db.so.1", "libutil.so.1",
    )),
)  # fmt: skip
CA_SOURCES = "usr/share/ca-certificates"
CA_BUNDLE = "etc/ssl/certs/ca-certificates.crt"


def unused(path: str) -> bool:
    """Whether the live system can do without this path."""
    if any(_under(path, p) for p in _UNUSED_OTHER):
        return True
    rest = path.removeprefix(STDLIB + "/")
    if rest == path:
        return False
    if rest.startswith("lib-dynload/"):
        return rest.removeprefix("lib-dynload/").startswith(_UNUSED_EXTENSIONS)
    if rest.startswith("encodings/"):
        return rest.removeprefix("encodings/") not in _KEPT_ENCODINGS
    return any(_under(rest, p) for p in _UNUSED_STDLIB)


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


def pruned(entries: Iterable[Entry]) -> list[Entry]:
    return [e for e in entries if not unused(e.path)]


def ca_bundle(entries: Iterable[Entry]) -> list[Entry]:
    """/etc/ssl/certs/ca-certificates.crt, which the ca-certificates package's maintainer
    script would make: every certificate it ships, in sorted order."""
    certs = sorted(
        (
            e
            for e in entries
            if e.path.startswith(CA_SOURCES + "/") and e.path.endswith(".crt") and e.source
        ),
        key=lambda e: e.path,
    )
    if not certs:
        return []
    data = b"".join(e.source.read_bytes().rstrip() + b"\n" for e in certs if e.source)
    return [Entry(CA_BUNDLE, _REG, data=data)]
