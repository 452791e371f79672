"""`python3 -m cpushare.seller FILE.cpu`: run one seller for one sell order."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from cpushare.console import emit
from cpushare.order import OrderError, load_order
from cpushare.seller.agent import Seller, SellerOptions, stop_on_signal


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python3 -m cpushare.seller",
        description="Sell this machine's CPU to the market named in a .cpu order.",
    )
    parser.add_argument("order", type=Path, help="the .cpu sell order")
    parser.add_argument(
        "--status-dir",
        type=Path,
        default=os.environ.get("CPUSHARE_STATUS_DIR") or None,
        help="keep ORDER-STEM.json with the seller's state here [env CPUSHARE_STATUS_DIR]",
    )
    parser.add_argument("--cpu", type=int, help="run on this CPU only (and say so)")
    parser.add_argument("--loader", type=Path, help="the jail loader [default: find it]")
    parser.add_argument(
        "--wait", type=float, default=30.0, help="seconds one lease request waits for a job"
    )
    parser.add_argument(
        "--memory-cap", type=int, help="the most memory in bytes a job may have on this machine"
    )
    parser.add_argument(
        "--nice", type=int, choices=range(20), metavar="0-19", help="instead of the order's nice"
    )
    parser.add_argument(
        "--backoff-max",
        type=float,
        default=60.0,
        help="longest pause between attempts while the market is unreachable",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    try:
        order = load_order(args.order)
    except OSError as exc:
        emit("error", what="order", detail=f"cannot read {args.order}: {exc.strerror}")
        return 2
    except OrderError as exc:
        emit("error", what="order", detail=f"{args.order}: {exc}")
        return 2
    options = SellerOptions(
        order_file=args.order,
        status_dir=args.status_dir,
        cpu=args.cpu,
        loader=args.loader,
        wait_seconds=args.wait,
        backoff_base=min(1.0, args.backoff_max),
        backoff_cap=args.backoff_max,
        memory_cap=args.memory_cap,
        nice=args.nice,
    )
    signal.signal(signal.SIGTERM, stop_on_signal)
    try:
        return Seller(order, options).run()
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
