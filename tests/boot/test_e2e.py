"""The unchanged ISO sells its CPUs to a real market on the host loopback, end to end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from cpushare.order import SellOrder, render_order
from cpushare.record import replace
from diskformats.fat import make_fat_image
from livecd.build import BuildOptions, build
from livecd.cli import main
from livecd.files import sha256_file
from livecd.profile import load_profile
from livecd.qemu.events import ConsoleEvents
from livecd.qemu.guest import Guest
from livecd.qemu.machine import GuestConfig
from livecd.qemu.medium import make_medium
from livecd.qemu.sale import run_sale, wait_for_results, with_order
from livecd.qemu.sale_market import (
    GUEST_MARKET_ADDR,
    SaleMarket,
    build_fsdither,
    guest_market,
    job_inputs,
)
from livecd.sdk.dither import dither

EPOCH = 1_700_000_000
# The supervisor's record of the first seller's process (/etc/init.d/cpushare).
PIDFILE = "/run/cpushare/volunteer-cpu0.pid"
# The order of a market nobody serves: enough for a seller to start and wait.
NOWHERE = SellOrder(
    market_url=f"https://{GUEST_MARKET_ADDR}:8443",
    order_id="o-nowhere",
    secret="s" * 32,
    account="volunteer",
    cert_sha256="0" * 64,
)


@pytest.fixture(scope="module")
def selftest_fail_iso(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default ISO whose kernel command line makes the seccomp self-test fail."""
    out = tmp_path_factory.mktemp("iso") / "selftest-fail.iso"
    profile = load_profile().with_overrides(timeout=0, cmdline="quiet cpushare.selftest=fail")
    return build(BuildOptions(profile=profile, output=out, source_date_epoch=EPOCH)).iso


@pytest.fixture
def market(tmp_path: Path) -> Iterator[SaleMarket]:
    with guest_market(tmp_path / "market", lease_seconds=6) as process:
        yield SaleMarket.open(process.start())


def _data_disk(path: Path) -> Path:
    """A volunteer's disk: a FAT filesystem with files, 4 MiB, writable by the guest."""
    files = {"photos/2024/beach.jpg": b"\xff\xd8" + bytes(range(256)) * 64, "notes.txt": b"mine"}
    image = make_fat_image(files, label="FAMILY", volume_id=0x12345678, mtime=EPOCH)
    path.write_bytes(image.ljust(4 << 20, b"\0"))
    return path


def _no_disk_in_use(guest: Guest) -> list[str]:
    """The guest sees the data stick beside the medium, yet no disk is mounted (the
    medium was unmounted once its orders were copied) and no swap is on."""
    status, partitions = guest.shell("cat /proc/partitions")
    _, mounts = guest.shell("cat /proc/mounts")
    _, swaps = guest.shell("cat /proc/swaps")
    problems = []
    if status != 0 or not {"sda", "sdb"} <= set(partitions.split()):
        problems.append(f"the guest does not see the medium and the data stick: {partitions!r}")
    # The one block device mounted is the loop device of the live system's image, held
    # in RAM (its folders bound read-only into the root).
    fields = [line.split(" ") for line in mounts.splitlines()]
    image = [f for f in fields if f[0] == "/dev/loop0" and f[2] == "squashfs"]
    if any(f[0].startswith("/dev/") for f in fields if f not in image):
        problems.append(f"a disk is mounted: {mounts!r}")
    if len(swaps.strip().splitlines()) > 1:
        problems.append(f"swap is on: {swaps!r}")
    return problems


def _tty1_shows(guest: Guest, *texts: str) -> list[str]:
    """The status screen's text on tty1 (its screen memory, /dev/vcs1) within 15 s: the
    fleet painted the frame and busybox showed it."""
    wanted = " && ".join(f"grep -qF '{text}' /dev/vcs1" for text in texts)
    status, _ = guest.shell(f"for i in $(seq 30); do {wanted} && exit 0; sleep 0.5; done; exit 1")
    if status == 0:
        return []
    _, screen = guest.shell("cat /dev/vcs1")
    return [f"tty1 does not show {texts}: {screen!r}"]


def _sellers_hand_big_blocks_back(guest: Guest) -> list[str]:
    """Each seller runs with glibc's mmap threshold fixed (/etc/init.d/cpushare): a job's
    large input and output, once freed, go back to the kernel."""
    status, out = guest.shell(
        "for f in /run/cpushare/*-cpu*.pid; do tr '\\0' '\\n' < /proc/$(cat $f)/environ"
        " | grep -qx MALLOC_MMAP_THRESHOLD_=131072 && echo fixed || echo not; done"
    )
    if status != 0 or out.split() != ["fixed", "fixed"]:
        return [f"the sellers' malloc threshold is not fixed: {out!r}"]
    return []


def _fleet_hash_seed_from_the_kernel(guest: Guest) -> list[str]:
    """The fleet's interpreter has its hash seed from the kernel, set by
    /etc/init.d/cpushare (32 bits, never 0: 0 turns randomization off), so that it
    starts without reading /dev/urandom, which waits for the generator."""
    proc = "/proc/$(cat /run/cpushare/fleet.pid)"
    status, out = guest.shell(f"tr '\\0' '\\n' < {proc}/environ | grep ^PYTHONHASHSEED=")
    seed = out.strip().partition("=")[2]
    if status != 0 or not seed.isdigit() or not 0 < int(seed) < 1 << 32:
        return [f"the fleet has no hash seed of its own: {out!r}"]
    # Read by the interpreter: neither -I nor -E, which ignore the environment.
    status, out = guest.shell(f"tr '\\0' ' ' < {proc}/cmdline")
    if status != 0 or "python3" not in out or {"-I", "-E"} & set(out.split()):
        return [f"the fleet's interpreter ignores its hash seed: {out!r}"]
    return []


def _after_the_sale(guest: Guest) -> list[str]:
    return (
        _no_disk_in_use(guest)
        + _sellers_hand_big_blocks_back(guest)
        + _fleet_hash_seed_from_the_kernel(guest)
        + _tty1_shows(guest, "selling: 2 seller(s)", "volunteer-cpu0", "volunteer-cpu1")
    )


@pytest.mark.qemu
def test_e2e_bios_cdrom_two_cpus_and_the_machines_disks_left_byte_identical(
    iso: Path, tmp_path: Path
) -> None:
    """A USB stick the live system can see (and whose label it reads) and a fixed disk
    it has no driver for, both holding a filesystem, are the same bytes afterwards."""
    stick, disk = _data_disk(tmp_path / "stick.img"), _data_disk(tmp_path / "disk.img")
    before = sha256_file(stick), sha256_file(disk)
    cfg = GuestConfig(iso=iso, cpus=2, sticks=(stick,), drives=(disk,), shell=True)
    result = run_sale(
        cfg, tmp_path / "serial.log", tmp_path, jobs=8, timeout=240, while_up=_after_the_sale
    )
    assert result.ok, result.problems
    assert result.sale is not None
    assert result.sale.accepted == 8 and result.sale.coins > 0
    started = [e for e in result.milestones if e.event == "seller-started"]
    assert sorted(e.fields["cpu"] for e in started) == ["0", "1"]
    assert {e.fields["nice"] for e in started} == {"19"}
    assert result.sale.first_result_uptime is not None and result.sale.jobs_per_minute
    assert (sha256_file(stick), sha256_file(disk)) == before


@pytest.mark.qemu
def test_e2e_uefi_secure_boot_usb_two_cpus(iso: Path, tmp_path: Path) -> None:
    cfg = GuestConfig(
        iso=iso, firmware="uefi", secure_boot=True, media="usb", cpus=2, nic="virtio-net-pci"
    )
    result = run_sale(cfg, tmp_path / "serial.log", tmp_path, jobs=6, timeout=240)
    assert result.ok, result.problems
    secureboot = result.first("secureboot")
    assert secureboot is not None and secureboot.fields["state"] == "enforced"
    assert result.sale is not None and result.sale.accepted == 6


@pytest.mark.qemu
def test_a_failing_seccomp_self_test_is_reported_and_starts_no_seller(
    selftest_fail_iso: Path, tmp_path: Path
) -> None:
    medium = make_medium({"nowhere.cpu": render_order(NOWHERE).encode()}, tmp_path / "m.img")
    cfg = GuestConfig(iso=selftest_fail_iso, sticks=(medium,), shell=True)
    with Guest(cfg, tmp_path / "serial.log") as guest:
        console = ConsoleEvents(guest)
        failed = console.wait("seccomp", 120, status="failed")
        assert failed is not None and failed.fields["reason"]
        refusal = console.wait("error", 60, what="sellers")
        assert refusal is not None and refusal.fields["detail"]
        # The boot-time check exits; then no process of the sellers' user is left.
        sellers = "ps -o user,args | grep '^cpushare '"
        gone = f"for i in $(seq 100); do {sellers} || exit 0; sleep 0.1; done; exit 1"
        status, pids = guest.shell(gone)
        assert status == 0, f"still running: {pids}"
        status, said = guest.shell("/etc/init.d/cpushare status")
        assert status == 3 and "not running" in said
        problems = _tty1_shows(guest, "not selling: strict seccomp does not work")
        assert not problems, problems
        assert not console.find("seller-started")
        assert guest.power_button(30)
    assert not console.find("seller-started")


@pytest.mark.qemu
def test_sellers_wait_while_the_market_is_down_then_work(
    iso: Path, tmp_path: Path, market: SaleMarket
) -> None:
    inputs = job_inputs(2)
    # replicas=1: this is about waiting for the market, not about agreement.
    jobs = market.submit(build_fsdither(tmp_path), inputs, replicas=1)
    market.process.stop()
    cfg = with_order(GuestConfig(iso=iso), market, tmp_path, "stick")
    with Guest(cfg, tmp_path / "serial.log") as guest:
        console = ConsoleEvents(guest)
        assert console.wait("seller-started", 120) is not None
        # The machine cannot enroll yet: its sellers wait for it.
        assert console.wait("error", 60, what="market-unreachable") is not None
        assert not console.find("enrolled")
        market.process.start()
        assert console.wait("enrolled", 120) is not None
        done = wait_for_results(console, market, jobs, 180)
        assert set(done) == set(jobs)
        for job, pgm in zip(jobs, inputs, strict=True):
            assert market.buyer.output(job) == dither(pgm)
        assert guest.power_button(30)


@pytest.mark.qemu
def test_a_seller_killed_mid_job_is_restarted_and_the_job_completes(
    iso: Path, tmp_path: Path, market: SaleMarket, spin: bytes
) -> None:
    # Hundreds of millions of rounds: seconds under emulation, time to kill the seller.
    # replicas=1: this is about a restarted seller, not about agreement.
    job = market.submit(spin, [b"300"], replicas=1)[0]
    cfg = with_order(GuestConfig(iso=iso, shell=True), market, tmp_path, "stick")
    with Guest(cfg, tmp_path / "serial.log") as guest:
        console = ConsoleEvents(guest)
        first = console.wait("seller-started", 120)
        assert first is not None
        assert console.wait("job-leased", 60, job=str(job)) is not None
        status, killed = guest.shell(f"cat {PIDFILE}; kill -KILL $(cat {PIDFILE})")
        assert status == 0, killed
        restarted = wait_for_results(console, market, [job], 180)
        assert set(restarted) == {job}
        assert market.buyer.output(job) == b"spun\n"
        assert console.find("error", what="seller")
        assert len(console.find("seller-started")) == 2
        _, pid = guest.shell(f"cat {PIDFILE}")
        assert pid.strip() != killed.strip()
        assert len(console.find("job-leased", job=str(job))) == 2
        assert len(console.find("job-finished", job=str(job))) == 1
        assert guest.power_button(30)


@pytest.mark.qemu
def test_an_invalid_order_on_the_medium_is_skipped_and_the_valid_one_runs(
    iso: Path, tmp_path: Path, market: SaleMarket
) -> None:
    inputs = job_inputs(1)
    # replicas=1: this is about choosing the orders, not about agreement.
    jobs = market.submit(build_fsdither(tmp_path), inputs, replicas=1)
    files = {
        "broken.cpu": b"format = 1\n[market]\nurl = 'ftp://x'\n",
        "good.cpu": market.order_file(),
    }
    medium = make_medium(files, tmp_path / "m.img")
    cfg = GuestConfig(iso=iso, sticks=(medium,), forwards=(market.forward,))
    with Guest(cfg, tmp_path / "serial.log") as guest:
        console = ConsoleEvents(guest)
        refused = console.wait("error", 120, what="order")
        assert refused is not None and refused.fields["file"] == "broken.cpu"
        orders = console.wait("orders", 60)
        assert orders is not None and orders.fields["source"] == "medium"
        assert orders.fields["count"] == "1"
        done = wait_for_results(console, market, jobs, 180)
        assert set(done) == set(jobs)
        assert market.buyer.output(jobs[0]) == dither(inputs[0])
        started = console.find("seller-started")
        assert {e.fields["order"] for e in started} == {market.order.order_id}
        assert guest.power_button(30)


@pytest.mark.qemu
def test_a_market_refusing_the_secret_is_reported_and_the_seller_keeps_trying(
    iso: Path, tmp_path: Path, market: SaleMarket
) -> None:
    wrong = replace(market.order, secret="w" * 32)
    medium = make_medium({"wrong.cpu": render_order(wrong).encode()}, tmp_path / "m.img")
    cfg = GuestConfig(iso=iso, sticks=(medium,), forwards=(market.forward,), shell=True)
    with Guest(cfg, tmp_path / "serial.log") as guest:
        console = ConsoleEvents(guest)
        assert console.wait("seller-started", 120) is not None
        # The order cannot enroll the machine: refused, and asked again after a pause.
        refused = console.wait("error", 60, what="market-refused")
        assert refused is not None and "401" in refused.fields["detail"]
        again = console.wait("error", 60, skip=1, what="market-refused")
        assert again is not None
        assert len(console.find("error", what="market-refused")) >= 2
        assert len(console.find("seller-started")) == 1 and not console.find("enrolled")
        status, _ = guest.shell("ps -o user,args | grep '^cpushare '")
        assert status == 0
        assert guest.power_button(30)
    assert "Traceback" not in (tmp_path / "serial.log").read_text(errors="replace")


@pytest.mark.qemu
def test_smoke_order_option_boots_a_seller_per_cpu(iso: Path, tmp_path: Path) -> None:
    order = tmp_path / "nowhere.cpu"
    order.write_text(render_order(NOWHERE))
    result = CliRunner().invoke(
        main, ["smoke", str(iso), "--order", str(order), "--log", str(tmp_path / "log")]
    )
    assert result.exit_code == 0, result.output
    rows = result.stdout.splitlines()
    assert rows[0].split() == ["milestone", "uptime", "wall", "details"]
    started = [row for row in rows if row.startswith("seller-started")]
    assert len(started) == 1 and "order=o-nowhere" in started[0] and "nice=19" in started[0]
    assert rows[-1].startswith("power off: clean")
