#!/usr/bin/env python3
"""The first sale at QEMU's defaults (no -m: 128 MiB, its e1000 NIC, SeaBIOS), the
volunteer's path (`qemu -cdrom` with the order in the CD's slot, no USB), of one or more
ISOs taken in turn, run after run. Prints, asserts nothing.

    scripts/bench_defaults.py [ISO...] [--runs 3]    (no ISO: the default one, built)

Each sale prints the guest's uptime when DHCP gave the address (`network`), when the
seller started, the `what=market-unreachable` lines before the first job (uptime and
why), and the uptime of the first result the market accepted (and how long after
`network`); then each ISO's medians. The e1000
gets its carrier and address later than virtio-net (bench_boot.py's machine): a seller
started first finds no route to its market for a while.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

from livecd.build import given_or_built
from livecd.qemu.machine import GuestConfig
from livecd.qemu.report import Report
from livecd.qemu.sale import run_sale


def _uptime(report: Report, event: str) -> float | None:
    found = report.first(event)
    return None if found is None else found.uptime


def _unreachable_before_sale(report: Report) -> list[str]:
    """The `market-unreachable` lines before the first job was leased: uptime and why."""
    lines = []
    for e in report.milestones:
        if e.event == "job-leased":
            break
        if e.event == "error" and e.fields.get("what") == "market-unreachable":
            why = e.fields.get("detail", "").rsplit(": ", 1)[-1]
            lines.append(f"{_figure(e.uptime)} s {why}")
    return lines


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("isos", type=Path, nargs="*", metavar="ISO")
    parser.add_argument("--runs", type=int, default=3, help="sales of each ISO (3)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-defaults-iso-") as built:
        return sales(args.isos or [given_or_built(None, Path(built))], args.runs)


def sales(isos: list[Path], runs: int) -> int:
    firsts: dict[Path, list[float]] = {iso: [] for iso in isos}
    for run in range(runs):
        for iso in isos:
            with tempfile.TemporaryDirectory(prefix="bench-defaults-") as work:
                cfg = GuestConfig(iso=iso, memory_mb=None)
                report = run_sale(
                    cfg, Path(work) / "serial.log", Path(work),
                    jobs=4, timeout=240, replicas=1, order_on="cd",
                )  # fmt: skip
            first = report.sale.first_result_uptime if report.sale else None
            network = _uptime(report, "network")
            after = None if first is None or network is None else first - network
            if first is not None:
                firsts[iso].append(first)
            unreachable = _unreachable_before_sale(report)
            load = " ".join(f"{x:.2f}" for x in os.getloadavg())
            print(
                f"run {run + 1} {iso.name}: network {_figure(network)} s, "
                f"seller-started {_figure(_uptime(report, 'seller-started'))} s, "
                f"market-unreachable lines {len(unreachable)}{unreachable or ''}, "
                f"first accepted result {_figure(first)} s ({_figure(after)} s after network)"
                f"{'' if report.ok else ' PROBLEMS ' + '; '.join(report.problems)} "
                f"(load {load})",
                flush=True,
            )
    for iso, values in firsts.items():
        if values:
            print(
                f"{iso.name}: first accepted result median {statistics.median(values):.2f} s "
                f"({min(values):.2f}-{max(values):.2f}, {len(values)} sales)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
