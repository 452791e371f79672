"""Recovery on a real guest: the link lost and regained during a job, the power button
during a job, a hung seller. The first two run in the default suite; the hung seller
(minutes of guest time) with `make test-matrix`."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from livecd.qemu.events import ConsoleEvents
from livecd.qemu.guest import Guest
from livecd.qemu.machine import GuestConfig
from livecd.qemu.sale import wait_for_results, with_order
from livecd.qemu.sale_market import SaleMarket, guest_market

pytestmark = pytest.mark.qemu


def _market(tmp_path: Path, lease_seconds: float) -> Iterator[SaleMarket]:
    with guest_market(tmp_path / "market", lease_seconds=lease_seconds) as process:
        yield SaleMarket.open(process.start())


@pytest.fixture
def market(tmp_path: Path) -> Iterator[SaleMarket]:
    """Short leases: a job whose seller lost the market is soon leased again."""
    yield from _market(tmp_path, 6)


@pytest.fixture
def slow_market(tmp_path: Path) -> Iterator[SaleMarket]:
    """Leases far longer than the test: only a release requeues a job."""
    yield from _market(tmp_path, 600)


def _guest_cfg(iso: Path, tmp_path: Path, market: SaleMarket) -> GuestConfig:
    return with_order(GuestConfig(iso=iso, shell=True), market, tmp_path, "stick")


def test_the_link_lost_during_a_job_comes_back_and_the_job_completes(
    iso: Path, tmp_path: Path, market: SaleMarket, spin: bytes
) -> None:
    # About 15 s of guest CPU under emulation. One guest is one host: these tests are about
    # recovery, not agreement, so the buyer trusts its seller (replicas=1).
    job = market.submit(spin, [b"3000"], replicas=1)[0]
    with Guest(_guest_cfg(iso, tmp_path, market), tmp_path / "serial.log") as guest:
        console = ConsoleEvents(guest)
        assert console.wait("job-leased", 180, job=str(job)) is not None
        time.sleep(3)  # the program is fetched: the job runs
        guest.qmp("set_link", name="net0", up=False)
        # Longer than the lease: the seller cannot extend it and notices.
        noticed = console.wait("error", 60)
        guest.qmp("set_link", name="net0", up=True)
        assert noticed is not None, "the seller did not notice the lost link"
        done = wait_for_results(console, market, [job], 240)
        assert set(done) == {job}
        assert market.buyer.output(job) == b"spun\n"
        assert console.find("seller-started") and len(console.find("seller-started")) == 1
        assert guest.power_button(30)


def test_the_power_button_during_a_job_hands_the_lease_back_and_powers_off(
    iso: Path, tmp_path: Path, slow_market: SaleMarket, spin: bytes
) -> None:
    job = slow_market.submit(spin, [b"100000"], replicas=1)[0]
    with Guest(_guest_cfg(iso, tmp_path, slow_market), tmp_path / "serial.log") as guest:
        console = ConsoleEvents(guest)
        assert console.wait("job-leased", 180, job=str(job)) is not None
        pressed = time.monotonic()
        assert guest.power_button(10), "the guest did not power off within 10 s"
        off_after = time.monotonic() - pressed
        console.drain()  # the lines QEMU printed before it exited
    released = console.find("lease-released")
    assert [e.fields["job"] for e in released] == [str(job)], (off_after, console.events[-5:])
    with sqlite3.connect(slow_market.process.db) as db:
        leases = db.execute("SELECT state, released FROM leases WHERE job_id = ?", (job,))
        assert [(state, when is not None) for state, when in leases] == [("expired", True)]
    assert slow_market.buyer.job(job)["state"] == "open"


@pytest.mark.matrix
def test_a_hung_seller_is_replaced_and_the_job_completes(
    iso: Path, tmp_path: Path, market: SaleMarket, spin: bytes
) -> None:
    with Guest(_guest_cfg(iso, tmp_path, market), tmp_path / "serial.log") as guest:
        console = ConsoleEvents(guest)
        first = console.wait("seller-started", 180)
        assert first is not None
        # Hung once it sells: a seller still enrolling makes no promise to the watchdog
        # (the market may be down for long), and the lone seller enrolls in its own process,
        # which may not have the network yet (DHCP runs beside the fleet's start).
        assert console.wait("enrolled", 120) is not None
        status, out = guest.shell(f"kill -STOP {first.fields['pid']}")
        assert status == 0, out
        replaced = console.wait("error", 240, what="seller")
        assert replaced is not None and "hung" in replaced.fields["detail"]
        second = console.wait("seller-started", 60, skip=1)
        assert second is not None and second.fields["pid"] != first.fields["pid"]
        job = market.submit(spin, [b"100"], replicas=1)[0]
        assert set(wait_for_results(console, market, [job], 180)) == {job}
        assert guest.power_button(30)
