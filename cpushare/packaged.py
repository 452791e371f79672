"""The sellers of the `cpushare` Debian package: one per `.cpu` order in /etc/cpushare.

`/etc/init.d/cpushare` and `cpushare.service` run this through `/usr/lib/cpushare/sellers`.
On a machine that already runs Debian or Ubuntu there is no medium, no kernel option and
no memory plan: the admin puts one order file per CPU to sell, and each gets a seller of
its own, at its order's nice level, as the unprivileged user `cpushare`. The live CD's
supervisor (`cpushare.seller.fleet`) keeps them alive: it restarts a seller that dies,
replaces one that hangs, and on SIGTERM has them hand their leases back.

    check ORDERS          the self-test and the orders, each problem on a line; 1 or 2 if
                          the sellers would not start
    serve ORDERS RUNDIR   the same checks, then sell until SIGTERM
    status RUNDIR         one line per seller with its state, job and earnings
"""

from __future__ import annotations

import argparse
import gc
import os
import pwd
import shutil
import sys
from pathlib import Path

from cpushare.console import emit
from cpushare.seller.fleet import Fleet, FleetOptions
from cpushare.seller.options import SellerOptions
from cpushare.seller.plan import Seat
from cpushare.seller.status import format_table, read_statuses
from cpushare.startup import seccomp_works, valid_orders

SELLER_USER = "cpushare"
EXIT_NO_SECCOMP = 1
EXIT_NO_ORDER = 2


def order_files(orders: Path) -> list[Path]:
    return sorted(p for p in orders.glob("*.cpu") if p.is_file())


def checked_orders(orders: Path) -> tuple[int, list[tuple[Path, int]]]:
    """The self-test, then the valid orders with their nice levels (the others reported
    and skipped); a non-zero code with one line saying why nothing can be sold.
    CPUSHARE_SELFTEST=fail fails the self-test on purpose, as for
    `python3 -m cpushare.jail.selftest`: what follows a failure can be tested anywhere."""
    if not seccomp_works(fail_on_purpose=os.environ.get("CPUSHARE_SELFTEST") == "fail"):
        return EXIT_NO_SECCOMP, []
    files = order_files(orders)
    if not files:
        emit(
            "error",
            what="sellers",
            detail=f"no order in {orders}: put a .cpu order there, one per CPU to sell",
        )
        return EXIT_NO_ORDER, []
    valid = valid_orders(files)
    emit("orders", source="directory", count=len(valid))
    if not valid:
        emit("error", what="sellers", detail=f"no valid order in {orders}: no seller started")
        return EXIT_NO_ORDER, []
    return 0, valid


def seats(orders: list[tuple[Path, int]], copies: Path, owner: tuple[int, int]) -> list[Seat]:
    """One seat per order file, named after it, on the online CPUs in turn. Each seller
    reads a private copy that only the seller user can read: the admin's file may be
    readable by root alone, and it holds the order's secret."""
    copies.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chown(copies, *owner)
    cpus = sorted(os.sched_getaffinity(0))
    out = []
    for i, (order, nice) in enumerate(orders):
        copy = copies / order.name
        shutil.copyfile(order, copy)
        os.chmod(copy, 0o600)
        os.chown(copy, *owner)
        out.append(Seat(order.stem, copy, cpus[i % len(cpus)], nice))
    return out


def serve(orders_dir: Path, rundir: Path, user: str) -> int:
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        emit("error", what="sellers", detail=f"no user {user!r}: reinstall the cpushare package")
        return EXIT_NO_ORDER
    owner = (entry.pw_uid, entry.pw_gid)
    code, orders = checked_orders(orders_dir)
    if code:
        return code
    status_dir = rundir / "status"
    # Files of an earlier run would show sellers (or orders) that are gone.
    shutil.rmtree(status_dir, ignore_errors=True)
    shutil.rmtree(rundir / "orders", ignore_errors=True)
    status_dir.mkdir(parents=True)
    os.chown(status_dir, *owner)
    fleet = Fleet(
        seats(orders, rundir / "orders", owner),
        FleetOptions(SellerOptions(status_dir=status_dir), pid_dir=None, user=owner),
    )
    # As in the live CD's fleet: what is imported now is shared with the forked sellers.
    gc.freeze()
    return fleet.run()


def status(rundir: Path) -> int:
    """The sellers' table; the init script asks only while they run (LSB status 0)."""
    statuses = read_statuses(rundir / "status")
    print(format_table(statuses) if statuses else "cpushare: starting: no seller reported yet")
    return 0


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="/usr/lib/cpushare/sellers", description="The sellers of the cpushare package."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="the self-test and the orders")
    check.add_argument("orders", type=Path)
    run = commands.add_parser("serve", help="sell until SIGTERM, one seller per order")
    run.add_argument("orders", type=Path)
    run.add_argument("rundir", type=Path)
    run.add_argument("--user", default=SELLER_USER, help="the sellers' user")
    show = commands.add_parser("status", help="one line per seller")
    show.add_argument("rundir", type=Path)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    if args.command == "check":
        return checked_orders(args.orders)[0]
    if args.command == "serve":
        return serve(args.orders, args.rundir, args.user)
    return status(args.rundir)


if __name__ == "__main__":
    sys.exit(main())
