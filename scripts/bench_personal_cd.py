#!/usr/bin/env python3
"""Personal live CD figures: the time to produce a volunteer's own CD from the market's
base ISO (the order written into its order slot, the rest copied), warm, as medians of
N runs: in the market's process (written to a file), and end to end over HTTP (an order
created through the API, then `GET /v1/orders/ORDER/livecd.iso` into a file). The base
is --iso, or the default profile built into a temporary folder (from the build cache)."""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cpushare.order import parse_order
from livecd.build import BuildOptions, build
from livecd.market_process import MarketProcess
from livecd.profile import load_profile
from market.buyer import BuyerClient
from market.personal import personal_iso

GOAL_S = 2.0
EPOCH = 1_700_000_000


def median_s(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iso", type=Path, help="the base ISO [default: build one]")
    parser.add_argument("-n", "--runs", type=int, default=9, help="runs of each case")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-personal-cd-") as tmp:
        work = Path(tmp)
        base = args.iso
        if base is None:
            profile = load_profile().with_overrides(timeout=0)
            opts = BuildOptions(profile=profile, output=work / "base.iso", source_date_epoch=EPOCH)
            base = build(opts).iso
        with MarketProcess(work / "market", livecd=base) as market:
            market.start()
            client = BuyerClient(market.url, market.account("volunteer").api_key)
            text = client.create_order()
            order_id = parse_order(text).order_id
            out = work / "personal.iso"

            def in_process() -> None:
                with out.open("wb") as f:
                    for chunk in personal_iso(base, text, f"{order_id}.cpu").chunks():
                        f.write(chunk)

            first = median_s(in_process, 1)
            warm = median_s(in_process, args.runs)
            http = median_s(lambda: client.livecd(order_id, out), args.runs)
    size = base.stat().st_size
    print(f"base ISO: {size / 1e6:.1f} MB")
    print(f"in process, first (finds the slot): {first * 1000:7.1f} ms")
    print(f"in process, warm:                   {warm * 1000:7.1f} ms (median of {args.runs})")
    print(f"over HTTP, warm:                    {http * 1000:7.1f} ms (median of {args.runs})")
    print(f"goal: a personal CD over HTTP in at most {GOAL_S:.0f} s warm")
    return 0 if http <= GOAL_S else 1


if __name__ == "__main__":
    sys.exit(main())
