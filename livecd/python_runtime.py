"""CPython in the live system: Debian's python3.11 packages are unpacked like any other;
this module prunes the standard library to the modules the guest imports and drops the
shared libraries and the data no seller uses."""

from __future__ import annotations

from collections.abc import Iterable

from diskformats.cpio import Entry
from livecd.guest_imports import stdlib_closure

STDLIB = "usr/lib/python3.11"

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


def unused(path: str, kept: frozenset[str]) -> bool:
    """Whether the live system can do without this path: `kept` names the standard
    library modules it keeps (`guest_imports.stdlib_closure`)."""
    if any(_under(path, p) for p in _UNUSED_OTHER):
        return True
    rest = path.removeprefix(STDLIB + "/")
    if rest == path:
        return False
    if rest == "lib-dynload":
        return False
    if rest.startswith("lib-dynload/"):
        # _ssl.cpython-311-x86_64-linux-gnu.so is the module _ssl
        return rest.removeprefix("lib-dynload/").split(".", 1)[0] not in kept
    if rest.endswith(".py"):
        module = rest.removesuffix(".py").removesuffix("/__init__")
        return module.replace("/", ".") not in kept
    # A package's directory stays with the package; other files (licence, test data) go.
    return rest.replace("/", ".") not in kept


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


def pruned(entries: Iterable[Entry]) -> list[Entry]:
    """`entries` without what the live system never reads: of the standard library, only
    the modules the guest's code imports stay."""
    kept = stdlib_closure()
    return [e for e in entries if not unused(e.path, kept)]
