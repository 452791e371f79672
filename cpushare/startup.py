"""What the live system checks before it sells: strict seccomp, then the orders.

The fleet (`cpushare.seller.fleet`) calls these once at boot, in the process that then
forks the sellers: the seccomp self-test (no seller starts when strict seccomp does not
work), then the orders: those on a removable medium labelled CPUSHARE (mounted read-only
just long enough to copy them) replace the built-in ones in /etc/cpushare; invalid ones
are reported and skipped.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from cpushare.console import emit
from cpushare.jail.check import self_test
from cpushare.medium import wait_for_medium
from cpushare.order import OrderError, load_order

BUILTIN = Path("/etc/cpushare")


def seccomp_works(fail_on_purpose: bool) -> bool:
    report = self_test(fail_on_purpose=fail_on_purpose)
    if report.ok:
        emit("seccomp", status="verified")
        return True
    emit("seccomp", status="failed", reason="; ".join(report.failures))
    emit("error", what="sellers", detail="strict seccomp does not work here: no seller started")
    return False


def medium_orders(rundir: Path) -> list[Path]:
    """Copies of the .cpu files of the CPUSHARE medium, if there is one."""
    device = wait_for_medium()
    if device is None:
        return []
    mnt, copies = rundir / "mnt", rundir / "medium"
    mnt.mkdir(parents=True, exist_ok=True)
    copies.mkdir(exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-o", "ro,nosuid,nodev,noexec", str(device), str(mnt)],
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
        found = sorted(p for p in mnt.iterdir() if p.suffix.lower() == ".cpu")
        return [Path(shutil.copyfile(p, copies / p.name)) for p in found]
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def valid_orders(paths: list[Path]) -> list[tuple[Path, int]]:
    """The orders that parse, with their nice level; the others reported and skipped."""
    valid = []
    for path in paths:
        try:
            order = load_order(path)
        except OSError as exc:
            emit("error", what="order", file=path.name, detail=f"cannot read it: {exc.strerror}")
        except OrderError as exc:
            emit("error", what="order", file=path.name, detail=f"skipped: {exc}")
        else:
            valid.append((path, order.nice))
    return valid
