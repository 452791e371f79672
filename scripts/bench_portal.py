#!/usr/bin/env python3
"""Portal figures: the home page's latency (p50, p95, max) idle, and while 200 simulated
sellers lease and post results as fast as they can (bench_market's load: hosts enrolled
from distinct loopback addresses, SQLite with fsync per commit).

The sellers run in a child process, the page is fetched from this one with a keep-alive
session every PROBE_EVERY seconds, so the probe's own timing is not queued behind the
sellers' event loop. Goal: p95 <= 200 ms under load.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import time

import requests
from bench_market import Seat, fill_queue, round_trips, running_market

PROBE_EVERY = 0.05


def _load(seats: list[Seat], seconds: float, rate: multiprocessing.Queue[float]) -> None:
    rate.put(asyncio.run(round_trips(seats, seconds, batch=False))[0])


def probe(url: str, seconds: float) -> list[float]:
    """Home page latencies in seconds, one fetch every PROBE_EVERY seconds."""
    latencies: list[float] = []
    with requests.Session() as session:
        stop = time.monotonic() + seconds
        while time.monotonic() < stop:
            start = time.monotonic()
            reply = session.get(url + "/", timeout=10)
            latencies.append(time.monotonic() - start)
            assert reply.status_code == 200 and "Machines selling" in reply.text, reply.text
            time.sleep(PROBE_EVERY)
    return latencies


def report(what: str, latencies: list[float]) -> float:
    ms = sorted(x * 1000 for x in latencies)
    p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
    print(
        f"portal: home page {what}: p50 {statistics.median(ms):.1f} ms, p95 {p95:.1f} ms, "
        f"max {ms[-1]:.1f} ms over {len(ms)} requests"
    )
    return p95


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sellers", type=int, default=200, help="concurrent simulated sellers")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each run")
    args = parser.parse_args()
    with running_market(args.sellers, None) as market:
        url = market.instances[0].url
        fill_queue(market, int(args.seconds * 3000))
        report("idle", probe(url, 3.0))
        rate: multiprocessing.Queue[float] = multiprocessing.Queue()
        load = multiprocessing.get_context("fork").Process(
            target=_load, args=(market.seats, args.seconds, rate)
        )
        load.start()
        time.sleep(1.0)  # the sellers are at full speed
        p95 = report(f"under {args.sellers} sellers' lease load", probe(url, args.seconds - 2))
        load.join()
        print(f"portal: meanwhile {rate.get():.0f} lease+result round trips/s")
    print(f"portal: home page p95 {p95:.1f} ms under load (goal <= 200 ms)")


if __name__ == "__main__":
    main()
