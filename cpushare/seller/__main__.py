"""`python3 -m cpushare.seller FILE.cpu`: run one seller for one sell order.

Alone, it enrolls this machine itself (one seat); started by `livecd sell`, it reads the
host identity its parent enrolled from the pipe `--host-fd` names.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from cpushare.console import emit
from cpushare.order import OrderError, load_order
from cpushare.seller import lifeline
from cpushare.seller.agent import Seller, stop_on_signal
from cpushare.seller.options import add_arguments, from_arguments


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python3 -m cpushare.seller",
        description="Sell this machine's CPU to the market named in a .cpu order.",
    )
    parser.add_argument("order", type=Path, help="the .cpu sell order")
    add_arguments(parser)
    parser.add_argument(
        "--lifeline",
        type=int,
        metavar="FD",
        help="stop (handing the lease back) once the other end of this pipe is closed: "
        "the starting process passes it to have its sellers die with it",
    )
    parser.add_argument(
        "--host-fd",
        type=int,
        metavar="FD",
        help="read this machine's host identity (enrolled by the starting process) from this "
        "pipe, instead of enrolling",
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
    signal.signal(signal.SIGTERM, stop_on_signal)
    if args.lifeline is not None:
        try:
            lifeline.watch(args.lifeline)
        except OSError as exc:
            emit("error", what="lifeline", detail=f"fd {args.lifeline}: {exc.strerror}")
            return 2
    try:
        options = from_arguments(args)
        return Seller(order, args.order, options, identity_fd=args.host_fd).run()
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
