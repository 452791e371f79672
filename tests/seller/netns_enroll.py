"""A seller started on a machine whose network is not up yet, and its market, alone in a
network namespace of their own (run as `unshare -n python3 netns_enroll.py WORKDIR
SECONDS` by test_netwait): the market listens on 127.0.0.1, then loopback loses its
address and goes down, so that the seller's connections find no route (ENETUNREACH), as
a machine's before DHCP; SECONDS after the seller started, loopback comes up again.
Prints one JSON object: the seller's console, and the uptimes at which loopback came up
and at which the helper saw the seller enrolled."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from seller_processes import SellerProcess

from livecd.market_process import MarketProcess


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True)


def uptime() -> float:
    return float(Path("/proc/uptime").read_text().split()[0])


def main(workdir: Path, down_seconds: float) -> int:
    ip("link", "set", "lo", "up")
    with MarketProcess(workdir / "market").start() as market:
        market.account("lab")
        market.order("lab", workdir / "lab.cpu")
        ip("addr", "flush", "dev", "lo")
        ip("link", "set", "lo", "down")
        seller = SellerProcess(workdir / "lab.cpu", workdir)
        try:
            seller.wait_for("seller-started")
            time.sleep(down_seconds)
            ip("link", "set", "lo", "up")
            up = uptime()
            seller.wait_for("enrolled", timeout=60)
            enrolled = uptime()
        finally:
            seller.stop(kill=True)
    console = seller.console.read_text(errors="replace")
    print(json.dumps({"console": console, "up": up, "enrolled": enrolled}))
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), float(sys.argv[2])))
