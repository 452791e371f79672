"""`python3 -m cpushare.startup RUNDIR`: what the live system checks before it sells.

Called by `/etc/init.d/cpushare start`, once, so that Python starts once for all of it
(under emulation a start costs a second): the seccomp self-test (no seller starts when
strict seccomp does not work), then the orders: those on a removable medium labelled
CPUSHARE (mounted read-only just long enough to copy them) replace the built-in ones in
/etc/cpushare; invalid ones are reported and skipped. Each valid order is printed on
stdout as `PATH NICE`. Exit status: 0 with at least one valid order, 1 when seccomp fails,
2 when no order is valid.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import subprocess
import sys
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m cpushare.startup")
    parser.add_argument("rundir", type=Path, help="where to copy the medium's orders")
    parser.add_argument(
        "--fail-selftest",
        action="store_true",
        help="make the seccomp self-test fail (kernel option cpushare.selftest=fail)",
    )
    args = parser.parse_args(argv)
    # Console lines go to stderr: stdout is the list of orders for the shell.
    with contextlib.redirect_stdout(sys.stderr):
        if not seccomp_works(args.fail_selftest):
            return 1
        on_medium = medium_orders(args.rundir)
        valid = valid_orders(on_medium or sorted(BUILTIN.glob("*.cpu")))
        emit("orders", source="medium" if on_medium else "builtin", count=len(valid))
    for path, nice in valid:
        print(path, nice)
    return 0 if valid else 2


if __name__ == "__main__":
    sys.exit(main())
