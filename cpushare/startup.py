"""What the live system checks before it sells: strict seccomp, then the orders.

The fleet (`cpushare.seller.fleet`) calls these once at boot, in the process that then
forks the sellers: the seccomp self-test (no seller starts when strict seccomp does not
work), then the orders: those on a removable medium labelled CPUSHARE (a FAT one read
from its device by cpushare.fatread, no filesystem mounted nor its modules loaded; an
ISO 9660 one mounted read-only just long enough to copy them) replace the built-in ones
in /etc/cpushare; invalid ones are reported and skipped. A medium is anybody's: an
order file is never followed through a symbolic link, never opened unless it is a
regular file, read only up to the largest order, and only so many of them are looked at.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from cpushare.console import emit
from cpushare.jail.check import self_test
from cpushare.medium import Medium, wait_for_medium
from cpushare.order import MAX_ORDER_BYTES, OrderError, parse_order_bytes

BUILTIN = Path("/etc/cpushare")
# Order files taken from one medium (one seller each: more than any PC has CPUs), and
# entries of its top folder looked at to find them; the rest is ignored, said once.
MAX_MEDIUM_ORDERS = 256
MAX_MEDIUM_ENTRIES = 4096
_KINDS = (
    (stat.S_ISLNK, "a symbolic link (not followed)"),
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def seccomp_works(fail_on_purpose: bool) -> bool:
    report = self_test(fail_on_purpose=fail_on_purpose)
    if report.ok:
        emit("seccomp", status="verified")
        return True
    emit("seccomp", status="failed", reason="; ".join(report.failures))
    emit("error", what="sellers", detail="strict seccomp does not work here: no seller started")
    return False


def _regular(mode: int) -> None:
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
        raise OSError(errno.EINVAL, f"it is {kind}")


def read_order_file(path: Path) -> bytes:
    """The bytes of a regular order file of at most MAX_ORDER_BYTES; OSError whose
    strerror says why not. A link is not followed, nor anything else opened that could
    block (a FIFO) or is not a file; the checks hold on the descriptor, not a name that
    could be swapped between a look and the open."""
    _regular(os.lstat(path).st_mode)  # a device is not even opened
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OSError(exc.errno, "it is a symbolic link (not followed)") from None
        raise
    with open(fd, "rb") as f:
        _regular(os.fstat(fd).st_mode)
        data = f.read(MAX_ORDER_BYTES + 1)
    if len(data) > MAX_ORDER_BYTES:
        raise _too_large()
    return data


def _order_error(name: str, exc: OSError) -> None:
    emit("error", what="order", file=name, detail=f"cannot read it: {exc.strerror}")


def _too_many() -> None:
    emit(
        "error",
        what="medium",
        detail=f"more than {MAX_MEDIUM_ENTRIES} entries or {MAX_MEDIUM_ORDERS}"
        " .cpu files: the rest are ignored",
    )


def _too_large() -> OSError:
    return OSError(errno.EFBIG, f"it is larger than an order may be ({MAX_ORDER_BYTES} bytes)")


def medium_order_names(folder: Path) -> list[str]:
    """The .cpu names of a medium's top folder, sorted: at most MAX_MEDIUM_ORDERS of them,
    among its first MAX_MEDIUM_ENTRIES entries (a line says so when there were more)."""
    names: list[str] = []
    with os.scandir(folder) as entries:
        for count, entry in enumerate(entries):
            is_order = Path(entry.name).suffix.lower() == ".cpu"
            if count == MAX_MEDIUM_ENTRIES or (is_order and len(names) == MAX_MEDIUM_ORDERS):
                _too_many()
                break
            if is_order:
                names.append(entry.name)
    return sorted(names)


def copy_orders(folder: Path, copies: Path) -> list[Path]:
    """Copies in `copies` of the order files of a medium mounted at `folder`; each one
    that is not a regular file of an order's size is reported and skipped."""
    out = []
    for name in medium_order_names(folder):
        try:
            data = read_order_file(folder / name)
        except OSError as exc:
            _order_error(name, exc)
            continue
        copy = copies / name
        copy.write_bytes(data)
        out.append(copy)
    return out


def fat_orders(device: Path, copies: Path) -> list[Path]:
    """Copies in `copies` of the order files at the root of the FAT volume on `device`,
    read from the device itself; the same checks and lines as copy_orders."""
    # Imported here: only the fleet's child that reads the orders needs it.
    from cpushare.fatread import FatReadError, FatVolume

    out = []
    try:
        fd = os.open(device, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        emit("error", what="medium", device=str(device), detail=f"cannot open it: {exc.strerror}")
        return []
    try:
        volume = FatVolume(fd)
        entries = volume.root(MAX_MEDIUM_ENTRIES)
        if len(entries) > MAX_MEDIUM_ENTRIES:
            _too_many()
            entries = entries[:MAX_MEDIUM_ENTRIES]
        orders = [e for e in entries if Path(e.name).suffix.lower() == ".cpu"]
        if len(orders) > MAX_MEDIUM_ORDERS:
            _too_many()
            orders = orders[:MAX_MEDIUM_ORDERS]
        for entry in sorted(orders, key=lambda e: e.name):
            if "/" in entry.name or entry.name in (".", ".."):
                _order_error(entry.name, OSError(errno.EINVAL, "its name is not a file's"))
            elif entry.is_dir:
                _order_error(entry.name, OSError(errno.EISDIR, "it is a directory"))
            elif entry.size > MAX_ORDER_BYTES:
                _order_error(entry.name, _too_large())
            else:
                copy = copies / entry.name
                copy.write_bytes(volume.read(entry))
                out.append(copy)
    except (FatReadError, OSError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        emit("error", what="medium", device=str(device), detail=f"cannot read it: {detail}")
    finally:
        os.close(fd)
    return out


def medium_orders(rundir: Path) -> list[Path]:
    """Copies of the .cpu files of the CPUSHARE medium, if there is one."""
    medium = wait_for_medium()
    if medium is None:
        return []
    copies = rundir / "medium"
    copies.mkdir(parents=True, exist_ok=True)
    if medium.filesystem == "vfat":
        return fat_orders(medium.device, copies)
    return mounted_orders(medium, rundir / "mnt", copies)


def mounted_orders(medium: Medium, mnt: Path, copies: Path) -> list[Path]:
    """Copies of the order files of a medium mounted read-only at `mnt` for the while."""
    device = medium.device
    mnt.mkdir(parents=True, exist_ok=True)
    import subprocess  # only with a medium: a boot without one starts no program

    # By name: the kernel loads that filesystem's module when asked for it.
    mounted = subprocess.run(
        ["mount", "-t", medium.filesystem, "-o", "ro,nosuid,nodev,noexec", str(device), str(mnt)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        emit(
            "error",
            what="medium",
            device=str(device),
            detail=f"cannot mount it read-only: {mounted.stderr.strip()}",
        )
        return []
    try:
        return copy_orders(mnt, copies)
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def valid_orders(paths: list[Path]) -> list[tuple[Path, int]]:
    """The orders that parse, with their nice level; the others reported and skipped."""
    valid = []
    for path in paths:
        try:
            order = parse_order_bytes(read_order_file(path))
        except OSError as exc:
            _order_error(path.name, exc)
        except OrderError as exc:
            emit("error", what="order", file=path.name, detail=f"skipped: {exc}")
        else:
            valid.append((path, order.nice))
    return valid
