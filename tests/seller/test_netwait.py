"""A seller that starts before its machine's network is up (before DHCP, as on the live CD
at QEMU's defaults) waits for a route to its market quietly, and enrolls once there is
one: which failures say so (NoRoute) and which do not (a refused connection)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cpushare.console import events_in
from cpushare.order import SellOrder
from cpushare.replies import NoRoute, Unreachable
from cpushare.seller.client import SOURCE_ADDRESS_ENV, MarketClient
from livecd.market_process import free_port

HELPER = Path(__file__).with_name("netns_enroll.py")
ALONE = ["unshare", "--net", "--pid", "--fork", "--kill-child"]


def _own_network_namespace() -> bool:
    """Whether this process may run another in a network namespace of its own (root)."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    return subprocess.run([*ALONE, "true"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _own_network_namespace(), reason="needs root, unshare and ip")
def test_a_seller_with_no_route_yet_waits_quietly_and_enrolls_once_there_is_one(
    tmp_path: Path,
) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    # A process namespace of their own too, the helper its first process: if it ends, or
    # unshare is killed (the timeout), the kernel kills its market and seller with it.
    done = subprocess.run(
        [*ALONE, sys.executable, str(HELPER), str(tmp_path), "1.5"],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.splitlines()[-1])
    events = events_in(found["console"])
    names = [e["event"] for e in events]
    # It started (and tried) while loopback had no address, said nothing of it, and
    # enrolled once loopback came up, with no error line at all.
    assert names[:2] == ["seller-started", "enrolled"], found["console"]
    assert "error" not in names, found["console"]
    started, enrolled = (float(e["uptime"]) for e in events[:2])
    assert started < found["up"] - 1.0 and found["up"] <= enrolled, found


NAME_IN_NO_NETWORK = """
from cpushare.order import SellOrder
from cpushare.replies import NoRoute
from cpushare.seller.client import MarketClient
order = SellOrder("http://market.invalid:8443", "order-netwait", "s" * 24, "lab")
try:
    MarketClient(order, timeout=2).request("POST", "/v1/hosts", {"seats": 1})
except NoRoute as exc:
    print("no route:", exc)
"""


@pytest.mark.skipif(not _own_network_namespace(), reason="needs root, unshare and ip")
def test_a_market_name_with_no_network_to_ask_is_no_route() -> None:
    # No interface up: the resolver cannot reach a name server (EAI_AGAIN), as before DHCP
    # wrote resolv.conf or gave the route to the server it names. Nothing leaves.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    done = subprocess.run(
        ["unshare", "-n", sys.executable, "-c", NAME_IN_NO_NETWORK],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("no route:") and "name resolution" in done.stdout, done.stdout


def _order(port: int) -> SellOrder:
    return SellOrder(f"http://127.0.0.1:{port}", "order-netwait", "s" * 24, "lab")


def test_no_address_to_send_from_is_no_route(monkeypatch: pytest.MonkeyPatch) -> None:
    # 192.0.2.1 (TEST-NET-1) is no address of this machine: bind fails with EADDRNOTAVAIL,
    # as a seller's would before DHCP gave its machine the address it was told to use.
    monkeypatch.setenv(SOURCE_ADDRESS_ENV, "192.0.2.1")
    client = MarketClient(_order(free_port()), timeout=2)
    with pytest.raises(NoRoute, match="Cannot assign requested address"):
        client.request("POST", "/v1/hosts", {"seats": 1})


def test_a_refused_connection_is_unreachable_not_no_route() -> None:
    # Nothing listens on the port: the machine has a route, the market is away.
    client = MarketClient(_order(free_port()), timeout=2)
    with pytest.raises(Unreachable) as raised:
        client.request("POST", "/v1/hosts", {"seats": 1})
    assert not isinstance(raised.value, NoRoute), raised.value
