"""A volunteer's own live CD: the stock CD's order slot, and the journey end to end. An
account creates an order (through the market's API, or signing up on the portal in a
browser) and downloads its personal CD (the market's base ISO with the order in the
slot); the CD boots with no stick (UEFI with Secure Boot enforced: shim and systemd-boot
load the slot unverified, from the ESP, where it shares its bytes with the ISO's; and
BIOS: ISOLINUX), its sellers sell for that order alone (the slot's order replaced the
built-in one), and the account's coins rise by what the ledger paid, as the volunteer's
account page shows."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from playwright.sync_api import Browser

from cpushare.order import SellOrder, parse_order, parse_order_bytes
from diskformats.orderslot import SLOT_PATH, SLOT_SIZE, find_slot
from livecd.market_process import MarketProcess
from livecd.qemu.events import ConsoleEvents
from livecd.qemu.guest import Guest
from livecd.qemu.machine import Forward, GuestConfig
from livecd.qemu.report import console_problems
from livecd.qemu.sale import wait_for_results
from livecd.qemu.sale_checks import coin_problems, seller_problems
from livecd.qemu.sale_market import (
    BUYER,
    BUYER_COINS,
    GUEST_MARKET_ADDR,
    GUEST_MARKET_PORT,
    VOLUNTEER,
    SaleMarket,
    build_fsdither,
    job_inputs,
)
from livecd.sdk.dither import dither
from market.buyer import BuyerClient
from tests.web.journey import Journey

GUEST_URL = f"https://{GUEST_MARKET_ADDR}:{GUEST_MARKET_PORT}"


def _extract(iso: Path, path: str, out: Path) -> str:
    subprocess.run(
        ["xorriso", "-osirrox", "on", "-indev", str(iso), "-extract", f"/{path}", str(out)],
        check=True,
        capture_output=True,
    )
    return out.read_text() if out.suffix == ".cfg" else ""


def test_the_stock_cd_has_an_empty_order_slot_that_both_boot_loaders_load(
    iso: Path, tmp_path: Path
) -> None:
    offset = find_slot(iso)
    with iso.open("rb") as f:
        f.seek(offset)
        assert f.read(SLOT_SIZE) == bytes(SLOT_SIZE)
    isolinux = _extract(iso, "isolinux/isolinux.cfg", tmp_path / "isolinux.cfg")
    assert isolinux.count(f"INITRD /live/initrd.img,/{SLOT_PATH}\n") == 3
    esp = tmp_path / "efi.img"
    _extract(iso, "boot/efi.img", esp)
    entries = "".join(
        subprocess.run(
            ["mtype", "-i", str(esp), f"::loader/entries/{name}.conf"],
            check=True,
            capture_output=True,
            text=True,
            env={"MTOOLS_SKIP_CHECK": "1"},
        ).stdout
        for name in ("live", "serial", "safe")
    )
    assert entries.count(f"initrd /live/initrd.img\ninitrd /{SLOT_PATH}\n") == 3


def _sell(personal: Path, process: MarketProcess, order: SellOrder, firmware: str) -> None:
    """Boot the personal CD with no stick; it sells two jobs for `order` and is paid."""
    workdir = personal.parent
    inputs = job_inputs(2)
    program = build_fsdither(workdir)
    market = SaleMarket(process, order, process.client(BUYER))
    process.grant(BUYER, BUYER_COINS)
    # replicas=1: this is about the CD and its order, not about agreement.
    jobs = market.submit(program, inputs, replicas=1)
    cfg = GuestConfig(
        iso=personal,
        firmware="bios" if firmware == "bios" else "uefi",
        secure_boot=firmware == "uefi-secure-boot",
        forwards=(Forward(GUEST_MARKET_ADDR, GUEST_MARKET_PORT, process.port),),
    )
    with Guest(cfg, workdir / "serial.log") as guest:
        console = ConsoleEvents(guest)
        done = wait_for_results(console, market, jobs, 300)
        assert set(done) == set(jobs), f"console log: {workdir / 'serial.log'}"
        assert [market.buyer.output(job) for job in jobs] == [dither(i) for i in inputs]
        orders = console.find("orders")
        assert [(e.fields["source"], e.fields["count"]) for e in orders] == [("builtin", "1")]
        problems = seller_problems(console, 1, order) + coin_problems(market, done)
        problems += console_problems(console.events, secure_boot=cfg.secure_boot, from_medium=False)
        assert problems == []
        if cfg.secure_boot:
            state = console.find("secureboot")
            assert [e.fields["state"] for e in state] == ["enforced"]
        assert market.coins()[order.account] > 0
        assert guest.power_button(30)


def _market(iso: Path, workdir: Path) -> MarketProcess:
    return MarketProcess(
        workdir / "market",
        lease_seconds=15,
        cert_names=[GUEST_MARKET_ADDR],
        livecd=iso,
        public_url=GUEST_URL,
    )


@pytest.mark.qemu
def test_a_volunteers_own_cd_made_through_the_api_sells_under_secure_boot(
    iso: Path, tmp_path: Path
) -> None:
    with _market(iso, tmp_path) as process:
        process.start()
        key = process.account(VOLUNTEER).api_key
        volunteer = BuyerClient(process.url, key, cacert=process.cert)
        order = parse_order(volunteer.create_order(nice=15))
        assert order.market_url == GUEST_URL
        personal = tmp_path / "mine.iso"
        volunteer.livecd(order.order_id, personal)
        _sell(personal, process, order, "uefi-secure-boot")


@pytest.mark.qemu
def test_a_volunteer_signs_up_downloads_their_cd_and_sees_its_coins(
    iso: Path, tmp_path: Path, browser: Browser, request: pytest.FixtureRequest
) -> None:
    """The portal's journey end to end, in the browser and a BIOS guest."""
    with _market(iso, tmp_path) as process:
        process.start()
        # The market's certificate is the test's own: the browser is told to take it.
        context = browser.new_context(ignore_https_errors=True, accept_downloads=True)
        try:
            page = context.new_page()
            journey = Journey(page, process, request.node.name)
            journey.sign_up("ada")
            row = journey.make_order()
            order = parse_order_bytes(journey.download(row, ".cpu file").path().read_bytes())
            assert (order.account, order.market_url) == ("ada", GUEST_URL)
            personal = tmp_path / "mine.iso"
            journey.download(row, "your own live CD").save_as(personal)
            _sell(personal, process, order, "bios")
            page.get_by_role("link", name="Account").click()
            earned = float(page.locator("#earned").inner_text().split()[0])
            assert earned > 0
            journey.shot("coins-earned")
            assert journey.errors == []
        finally:
            context.close()
