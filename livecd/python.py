"""CPython and the CPUShare seller in the live system.

Debian's python3.11 packages are unpacked like any other; this module prunes the parts of
the standard library no seller uses, adds the guest side of the `cpushare` package (orders,
jail, seller: standard library only), builds the jail's loader and self-test job with the
host's C compiler, and compiles every module to an unchecked-hash `.pyc` at build time:
under emulation, compiling at boot would cost seconds. Compiled files and binaries are
cached by the hash of their sources, so a warm rebuild recompiles nothing.
"""

from __future__ import annotations

import hashlib
import importlib.util
import marshal
import stat
import sys
import types
from collections.abc import Iterable
from pathlib import Path

import cpushare
from livecd import toolchain
from livecd.errors import BuildError
from livecd.files import atomic_write
from livecd.formats.cpio import Entry

STDLIB = "usr/lib/python3.11"
CPUSHARE_SRC = Path(cpushare.__file__).resolve().parent
_REG = stat.S_IFREG | 0o644
_EXE = stat.S_IFREG | 0o755
# Part of the cache key of compiled files: a change of format compiles everything again.
_PYC_FORMAT = importlib.util.MAGIC_NUMBER + b"unchecked-hash marshal-2"

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


def cpushare_package() -> list[Entry]:
    """The whole `cpushare` package (the guest side: standard library only), in the
    interpreter's own library directory so that `python3 -I -S -m cpushare.seller` finds
    it without site processing."""
    sources = sorted(CPUSHARE_SRC.rglob("*.py"))
    return [
        Entry(f"{STDLIB}/cpushare/{p.relative_to(CPUSHARE_SRC).as_posix()}", _REG, source=p)
        for p in sources
    ]


def jail_binaries() -> list[Entry]:
    """The jail loader and the self-test job, from the toolchain's cache."""
    return [
        Entry("usr/lib/cpushare/jail-loader", _EXE, source=toolchain.loader()),
        Entry("usr/lib/cpushare/selftest.job", _REG, source=toolchain.selftest_job()),
    ]


def compiled(entries: Iterable[Entry], cache: Path) -> list[Entry]:
    """`entries` with every module of the interpreter's library compiled at build time
    into an unchecked-hash `.pyc`, whose bytes depend on the source alone. The standard
    library ships compiled only (`X.pyc` in place of `X.py`, which Python imports without
    a source): half the size. `cpushare` keeps its sources beside `__pycache__/`, so that
    a seller's traceback on a volunteer's screen shows the failing line."""
    if sys.version_info[:2] != (3, 11):
        raise BuildError(
            "the image's Python is 3.11: run the builder with Python 3.11 so that its "
            f".pyc files match (this is {sys.version.split()[0]})"
        )
    out = []
    for e in entries:
        if not (
            e.path.startswith(STDLIB + "/") and e.path.endswith(".py") and stat.S_ISREG(e.mode)
        ):
            out.append(e)
            continue
        pyc = _pyc(e.source.read_bytes() if e.source else e.data, "/" + e.path, cache)
        parent, _, name = e.path.rpartition("/")
        if e.path.startswith(f"{STDLIB}/cpushare/"):
            out += [e, Entry(f"{parent}/__pycache__/{name[:-3]}.cpython-311.pyc", _REG, source=pyc)]
        else:
            out.append(Entry(f"{e.path}c", _REG, source=pyc))
    return out


def _pyc(source: bytes, dfile: str, cache: Path) -> Path:
    key = hashlib.sha256(_PYC_FORMAT + dfile.encode() + b"\0" + source)
    out = cache / "pyc" / f"{key.hexdigest()}.pyc"
    if out.exists():
        return out
    try:
        code = compile(source, dfile, "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as exc:
        raise BuildError(f"{dfile} does not compile: {exc}") from None
    atomic_write(out, _pyc_bytes(source, code))
    return out


def _pyc_bytes(source: bytes, code: types.CodeType) -> bytes:
    """An unchecked-hash `.pyc` (PEP 552). Marshal format 4, which py_compile writes,
    flags an object as shared when its reference count in the compiling process is above
    one, so the bytes depend on what that process imported before; format 2 has no
    shared references, and every Python 3 reads it."""
    flags = (0b01).to_bytes(4, "little")  # hash-based, not checked against the source
    return (
        importlib.util.MAGIC_NUMBER
        + flags
        + importlib.util.source_hash(source)
        + (marshal.dumps(code, 2))
    )
