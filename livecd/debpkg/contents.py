"""What the `cpushare` package installs, from the same sources the live CD ships.

Nothing here is a second copy: the guest package is `cpushare/` walked as the CD's image
walks it, and the jail's loader and self-test job come from the toolchain's cache. Only
the packaging itself (init script, unit, maintainer scripts, launcher) lives in
`templates/deb/`.
"""

from __future__ import annotations

import email.utils
import gzip
import stat
import tempfile
from pathlib import Path

from cpushare.jail.runner import JOB_IDENTITY
from diskformats.cpio import Entry
from livecd import __version__, guest, toolchain
from livecd.run import need, run
from livecd.templates import TEMPLATES

PACKAGE = "cpushare"
ARCHITECTURE = "amd64"
VERSION = __version__
MAINTAINER = "CPUShare live CD maintainers <cpushare@example.org>"
DEPENDS = "adduser, python3 (>= 3.11)"
# invoke-rc.d --skip-systemd-native in prerm; Debian 12 has 1.65, Ubuntu 24.04 1.66.
PRE_DEPENDS = "init-system-helpers (>= 1.54~)"
DEB_TEMPLATES = TEMPLATES / "deb"
LIB = "usr/lib/cpushare"
DOC = f"usr/share/doc/{PACKAGE}"
CONFFILES = ("etc/init.d/cpushare", "etc/logrotate.d/cpushare")
SCRIPTS = ("postinst", "prerm", "postrm")
_REG = stat.S_IFREG | 0o644
_EXE = stat.S_IFREG | 0o755
_DIR = stat.S_IFDIR | 0o755

DESCRIPTION = """\
sell this machine's idle CPU to research projects, safely
 CPUShare sellers lease native x86-64 jobs from a market named in a .cpu sell
 order, run each at nice 19 in a SECCOMP_MODE_STRICT jail that can read its
 input, write its output and nothing else, and post the results; the order's
 account is credited with CPUCoins. Put one order per CPU to sell in
 /etc/cpushare and start /etc/init.d/cpushare (or cpushare.service)."""


def stripped(binary: Path) -> bytes:
    """The toolchain's build without its symbol table: the same code and segments (the
    jail validates segments only), as Debian ships binaries."""
    strip = need("strip", "binutils")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / binary.name
        run(
            [strip, "--strip-all", "--remove-section=.comment", "-o", out, binary],
            what=f"strip {binary.name}",
        )
        return out.read_bytes()


def changelog(epoch: int) -> bytes:
    """The native package's changelog, dated SOURCE_DATE_EPOCH, gzip -9n."""
    date = email.utils.formatdate(epoch, usegmt=False)
    text = (
        f"{PACKAGE} ({VERSION}) unstable; urgency=medium\n\n"
        "  * Built from the cpushare-livecd sources: the live CD's seller, its\n"
        "    supervisor and the seccomp jail, for Debian and Ubuntu machines.\n\n"
        f" -- {MAINTAINER}  {date}\n"
    )
    return gzip.compress(text.encode(), compresslevel=9, mtime=0)


def files(epoch: int) -> list[Entry]:
    """Every file and directory of the package, parents included, sorted by path."""
    entries = [
        *guest.cpushare_package(LIB),
        # Not setuid here: postinst makes it 4750 root:cpushare and job-identity
        # cpushare-job's (stat overrides: both users are made by postinst).
        Entry(f"{LIB}/jail-loader", _EXE, data=stripped(toolchain.loader())),
        Entry(JOB_IDENTITY.relative_to("/").as_posix(), _REG, data=b"cpushare-job\n"),
        Entry(f"{LIB}/selftest.job", _REG, data=stripped(toolchain.selftest_job())),
        Entry(f"{LIB}/sellers", _EXE, source=DEB_TEMPLATES / "sellers"),
        Entry("etc/init.d/cpushare", _EXE, source=DEB_TEMPLATES / "cpushare.init"),
        Entry(
            "lib/systemd/system/cpushare.service", _REG, source=DEB_TEMPLATES / "cpushare.service"
        ),
        Entry("etc/logrotate.d/cpushare", _REG, source=DEB_TEMPLATES / "cpushare.logrotate"),
        Entry("etc/cpushare", _DIR),
        Entry(f"{DOC}/copyright", _REG, source=DEB_TEMPLATES / "copyright"),
        Entry(f"{DOC}/README.Debian", _REG, source=DEB_TEMPLATES / "README.Debian"),
        Entry(f"{DOC}/changelog.gz", _REG, data=changelog(epoch)),
        Entry(
            f"usr/share/lintian/overrides/{PACKAGE}",
            _REG,
            source=DEB_TEMPLATES / "lintian-overrides",
        ),
    ]
    paths = {e.path for e in entries}
    for e in list(entries):
        parent = Path(e.path).parent
        while parent != Path(".") and parent.as_posix() not in paths:
            paths.add(parent.as_posix())
            entries.append(Entry(parent.as_posix(), _DIR))
            parent = parent.parent
    return sorted(entries, key=lambda e: e.path)


def control(installed_kib: int) -> str:
    return (
        f"Package: {PACKAGE}\n"
        f"Version: {VERSION}\n"
        f"Architecture: {ARCHITECTURE}\n"
        f"Maintainer: {MAINTAINER}\n"
        f"Installed-Size: {installed_kib}\n"
        f"Pre-Depends: {PRE_DEPENDS}\n"
        f"Depends: {DEPENDS}\n"
        "Section: net\n"
        "Priority: optional\n"
        f"Description: {DESCRIPTION}\n"
    )


def maintainer_scripts() -> list[tuple[str, bytes]]:
    return [(name, (DEB_TEMPLATES / name).read_bytes()) for name in SCRIPTS]
