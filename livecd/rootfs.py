"""The live system's root filesystem, as cpio entries: busybox and its applet links,
the driver modules, extra packages (pruned), `overlays/` verbatim and `templates/rootfs`
rendered. Later layers replace earlier ones path by path.
"""

from __future__ import annotations

import posixpath
import stat
from collections.abc import Iterable
from pathlib import Path

from diskformats.cpio import Entry, tree_entries
from livecd.errors import BuildError
from livecd.kernel import Kernel, Module, module_db
from livecd.run import run
from livecd.templates import Rendered

OVERLAYS = Path(__file__).resolve().parent.parent / "overlays"

_DIR = stat.S_IFDIR | 0o755
_LINK = stat.S_IFLNK | 0o777
_SKELETON = (
    "bin",
    "sbin",
    "usr/bin",
    "usr/sbin",
    "etc",
    "proc",
    "sys",
    "dev",
    "run",
    "tmp",
    "root",
    "var",
    "mnt",
)
# Device nodes the kernel needs before devtmpfs is mounted: written into the cpio
# directly, so that building needs no root.
_EARLY_DEVICES = (("dev/console", 0o600, (5, 1)), ("dev/null", 0o666, (1, 3)))
# What no seller needs: documentation, translations, packaging metadata.
PRUNED = (
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "usr/share/lintian",
    "usr/share/bug",
    "usr/share/menu",
    "etc/init.d",
    "usr/lib/systemd",
    "lib/systemd",
)


def skeleton() -> list[Entry]:
    dirs = [Entry(d, _DIR) for d in _SKELETON]
    tmp = [Entry("tmp", stat.S_IFDIR | 0o1777)]
    devices = [Entry(p, stat.S_IFCHR | m, rdev=dev) for p, m, dev in _EARLY_DEVICES]
    return dirs + tmp + devices


def busybox(tree: Path) -> list[Entry]:
    """busybox-static as /bin/busybox, with a symlink for each of its applets."""
    binary = tree / "bin" / "busybox"
    if not binary.is_file():
        raise BuildError("busybox-static holds no bin/busybox; is the package right?")
    applets = run([binary, "--list-full"], what="busybox --list-full").stdout.decode().split()
    links = [Entry(a, _LINK, data=b"/bin/busybox") for a in applets if a != "bin/busybox"]
    return [Entry("bin/busybox", stat.S_IFREG | 0o755, source=binary), *links]


def modules(kernel: Kernel, chosen: list[Module]) -> list[Entry]:
    """The chosen modules byte for byte as plain `.ko` files (their signatures must stay
    valid), with the modules.dep and modules.alias written for exactly them."""
    base = f"lib/modules/{kernel.release}"
    files = [
        Entry(f"{base}/{m.path.as_posix()}", stat.S_IFREG | 0o644, source=m.source) for m in chosen
    ]
    db = {**module_db(chosen), "modules.builtin": _read(kernel.modules / "modules.builtin")}
    meta = [
        Entry(f"{base}/{name}", stat.S_IFREG | 0o644, data=text.encode())
        for name, text in sorted(db.items())
    ]
    return files + meta


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def package_tree(name: str, tree: Path) -> list[Entry]:
    """All of an extra package's files but the pruned ones."""
    try:
        entries = tree_entries(tree)
    except ValueError as exc:
        raise BuildError(f"package {name}: {exc}") from None
    return [e for e in entries if not any(_under(e.path, p) for p in PRUNED)]


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


def overlay(root: Path = OVERLAYS) -> list[Entry]:
    """`overlays/` verbatim. A relative symlink that climbs out of the image's root is
    refused; absolute targets are fine, as they resolve inside the live system."""
    if not root.is_dir():
        raise BuildError(f"overlay folder {root} is missing: restore it from the repository")
    try:
        entries = tree_entries(root)
    except ValueError as exc:
        raise BuildError(f"overlay {exc}") from None
    for e in entries:
        if stat.S_ISLNK(e.mode):
            target = e.data.decode(errors="replace")
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname(e.path), target))
            if not target.startswith("/") and (resolved == ".." or resolved.startswith("../")):
                raise BuildError(
                    f"overlay {e.path} -> {target} points outside the root filesystem: "
                    "make it an absolute path inside the image"
                )
    return entries


def rendered(files: Iterable[Rendered]) -> list[Entry]:
    return [Entry(f.path, stat.S_IFREG | f.mode, data=f.data) for f in files]


def merge(*layers: Iterable[Entry]) -> list[Entry]:
    """One entry per path; a later layer replaces an earlier one."""
    by_path: dict[str, Entry] = {}
    for layer in layers:
        for e in layer:
            by_path[e.path] = e
    return list(by_path.values())


def size_of(entries: Iterable[Entry]) -> int:
    return sum(e.source.stat().st_size if e.source else len(e.data) for e in entries)
