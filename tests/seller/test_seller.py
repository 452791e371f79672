"""The seller against a real market on loopback, with the real jail."""

from __future__ import annotations

import io
import json
import os
import signal
import sqlite3
from pathlib import Path

import pytest
from polling import until
from seller_processes import SellerProcess, StartSeller, statuses_when

from cpushare.order import load_order
from cpushare.seller.agent import Seller, stop_on_signal
from cpushare.seller.client import MarketClient as SellerClient
from cpushare.seller.host import SEATS_PER_SELLER
from cpushare.seller.options import SellerOptions
from livecd.market_process import MarketProcess, free_port
from livecd.orders import write_order
from livecd.sdk.dither import dither, sample_image
from market import admin
from market.buyer import BuyerClient
from market.tls import self_signed

GRANT = 1_000_000


def _coins(market: MarketProcess) -> dict[str, float]:
    """Every account's balance, as the operator sees it."""
    return {str(a["name"]): float(str(a["coins"])) for a in admin.list_accounts(market.db)}


def _wait_done(buyer: BuyerClient, count: int, timeout: float = 60) -> None:
    until(
        lambda: buyer.status()["jobs"]["done"] >= count,
        f"{count} jobs done",
        timeout,
        told=buyer.status,
    )


def test_a_batch_through_two_sellers_over_pinned_tls_matches_the_reference(
    tmp_path: Path, fsdither: bytes, start_seller: StartSeller
) -> None:
    cert_pem, key_pem = self_signed(["127.0.0.1"])
    (tmp_path / "cert.pem").write_bytes(cert_pem)
    (tmp_path / "key.pem").write_bytes(key_pem)
    market = MarketProcess(
        tmp_path, lease_seconds=5, tls=(tmp_path / "cert.pem", tmp_path / "key.pem")
    ).start()
    try:
        api_key = market.account("lab", coins=GRANT).api_key
        buyer = BuyerClient(market.url, api_key, cacert=tmp_path / "cert.pem")
        images = [sample_image(40 + 7 * i, 30 + 5 * i, seed=i) for i in range(8)]
        # Two machines (two source addresses): new hosts, so every job needs both.
        sellers = []
        for name, source in (("alice", "127.0.0.2"), ("bob", "127.0.0.3")):
            market.account(name)
            order = market.order(name, tmp_path / f"{name}.cpu")
            assert order.market_url == market.url and order.cert_sha256
            sellers.append(start_seller(tmp_path / f"{name}.cpu", source=source))
        ids = buyer.submit(buyer.upload_program(fsdither), images)
        _wait_done(buyer, len(ids))
        for job, image in zip(ids, images, strict=True):
            assert buyer.output(job) == dither(image)
        for seller in sellers:
            finished = seller.events("job-finished")
            assert sorted(int(e["job"]) for e in finished) == ids
            assert all(e["status"] == "ok" for e in finished)
            started = seller.wait_for("seller-started")[0]
            assert started["nice"] == "19" and started["order"] == load_order(seller.order).order_id
            # Alone, a seller enrolls with its seats: its job's and its queue's.
            assert seller.events("enrolled")[0]["seats"] == str(SEATS_PER_SELLER)
        coins = _coins(market)
        assert coins["alice"] > 0 and coins["bob"] > 0 and coins["lab"] < GRANT
        assert admin.check_ledger(market.db) == []
    finally:
        market.stop(kill=True)


def test_a_seller_refuses_a_market_whose_certificate_is_not_pinned(
    tmp_path: Path, start_seller: StartSeller
) -> None:
    cert_pem, key_pem = self_signed(["127.0.0.1"])
    (tmp_path / "cert.pem").write_bytes(cert_pem)
    (tmp_path / "key.pem").write_bytes(key_pem)
    market = MarketProcess(tmp_path, tls=(tmp_path / "cert.pem", tmp_path / "key.pem")).start()
    try:
        market.account("lab")
        order = market.order("lab", tmp_path / "lab.cpu")
        from cpushare.record import replace

        write_order(replace(order, cert_sha256="0" * 64), tmp_path / "impostor.cpu")
        seller = start_seller(tmp_path / "impostor.cpu")
        errors = seller.wait_for("error", 2)
        assert all(e["what"] == "market-unreachable" for e in errors)
        assert "does not match the order's cert_sha256" in errors[0]["detail"]
        assert seller.process.poll() is None
    finally:
        market.stop(kill=True)


def test_replication_rejects_a_lying_seller_and_credits_the_honest(
    market: MarketProcess,
    buyer: BuyerClient,
    fsdither: bytes,
    tmp_path: Path,
    start_seller: StartSeller,
) -> None:
    images = [sample_image(32, 24, seed=s) for s in (1, 2)]
    ids = buyer.submit(buyer.upload_program(fsdither), images, replicas=2)
    market.account("mallory")
    order = market.order("mallory", tmp_path / "mallory.cpu")
    host = market.enroll(order, seats=len(ids), source="127.0.0.4")
    liar = SellerClient(order, credentials=host.auth)
    for seat in range(len(ids)):
        lease = liar.request_json("POST", "/v1/lease", {"wait": 5, "seat": seat})
        assert lease is not None
        body = {
            "outcome": "ok",
            "exit_status": 0,
            "output": "bGllcw==",
            "cpu_seconds": 30.0,
            "wall_seconds": 30.0,
        }
        liar.request_json("POST", f"/v1/leases/{lease['lease']}/result", body)
    for name, source in (("alice", "127.0.0.2"), ("bob", "127.0.0.3")):
        market.account(name)
        market.order(name, tmp_path / f"{name}.cpu")
        start_seller(tmp_path / f"{name}.cpu", source=source)
    _wait_done(buyer, len(ids))
    for job, image in zip(ids, images, strict=True):
        assert buyer.output(job) == dither(image)
    db = sqlite3.connect(market.db)
    verdicts = db.execute(
        "SELECT a.name, r.verdict, count(*) FROM results r JOIN orders o ON o.id = r.order_id "
        "JOIN accounts a ON a.id = o.account_id GROUP BY a.name, r.verdict"
    ).fetchall()
    assert sorted(verdicts) == [
        ("alice", "accepted", 2),
        ("bob", "accepted", 2),
        ("mallory", "rejected", 2),
    ]
    coins = _coins(market)
    assert coins["mallory"] == 0 and coins["alice"] > 0 and coins["bob"] > 0


def test_a_seller_killed_mid_job_loses_its_lease_and_another_finishes(
    market: MarketProcess,
    buyer: BuyerClient,
    spin: bytes,
    tmp_path: Path,
    start_seller: StartSeller,
) -> None:
    market.account("alice")
    market.order("alice", tmp_path / "first.cpu")
    market.order("alice", tmp_path / "second.cpu")
    # replicas=1: this is about a lost lease, not about agreement (one machine here).
    job = buyer.submit(buyer.upload_program(spin), [b"6000"], replicas=1)[0]
    first = start_seller(tmp_path / "first.cpu")
    first.wait_for("job-leased")
    first.stop(kill=True)
    assert buyer.job(job)["state"] == "open"
    second = start_seller(tmp_path / "second.cpu")
    _wait_done(buyer, 1)
    assert buyer.output(job) == b"spun\n"
    assert second.events("job-finished")[0]["job"] == str(job)
    assert not first.events("job-finished")


def test_sellers_back_off_while_the_market_is_down_then_work(
    tmp_path: Path, fsdither: bytes, start_seller: StartSeller
) -> None:
    market = MarketProcess(tmp_path, port=free_port(), lease_seconds=5).start()
    api_key = market.account("lab", coins=GRANT).api_key
    market.order("lab", tmp_path / "lab.cpu")
    market.stop()
    try:
        # Pauses of up to 1 s, then 2 s: at least a tenth of that each.
        seller = start_seller(tmp_path / "lab.cpu", "--backoff-max", "2")
        errors = seller.wait_for("error", 3)
        assert {e["what"] for e in errors} == {"market-unreachable"}
        times = [float(e["uptime"]) for e in errors[:3]]
        assert times[1] - times[0] >= 0.09 and times[2] - times[1] >= 0.19, times
        market.start()
        buyer = BuyerClient(market.url, api_key)
        image = sample_image(20, 20)
        # replicas=1: this is about backing off, not about agreement.
        job = buyer.submit(buyer.upload_program(fsdither), [image], replicas=1)[0]
        _wait_done(buyer, 1)
        assert buyer.output(job) == dither(image)
        assert len(seller.events("enrolled")) == 1
        statuses_when(
            tmp_path / "status", lambda found: "lab" in found and found["lab"].jobs_done == 1
        )
    finally:
        market.stop(kill=True)


def test_a_seller_whose_jail_fails_its_self_test_refuses_to_start(tmp_path: Path) -> None:
    from cpushare.order import SellOrder

    order = SellOrder("http://127.0.0.1:9", "o-test", "s" * 20, "lab")
    write_order(order, tmp_path / "lab.cpu")
    seller = SellerProcess(tmp_path / "lab.cpu", tmp_path, "--loader", "/bin/false")
    assert seller.process.wait(timeout=30) == 1
    failed = seller.events("seccomp")
    assert failed and failed[0]["status"] == "failed" and failed[0]["reason"]
    assert not seller.events("seller-started")


def test_a_seller_extends_its_lease_while_a_long_job_runs(
    market: MarketProcess,
    buyer: BuyerClient,
    spin: bytes,
    tmp_path: Path,
    start_seller: StartSeller,
) -> None:
    market.account("alice")
    market.order("alice", tmp_path / "alice.cpu")
    # About 4 s of CPU against 2-second leases: only extensions keep the lease alive.
    # replicas=1: this is about extensions, not about agreement.
    job = buyer.submit(buyer.upload_program(spin), [b"6000"], replicas=1)[0]
    seller = start_seller(tmp_path / "alice.cpu")
    _wait_done(buyer, 1)
    assert buyer.job(job)["results"] == 1
    assert not seller.events("error")


def test_a_sigterm_as_a_job_starts_still_hands_its_lease_back(
    market: MarketProcess,
    buyer: BuyerClient,
    fsdither: bytes,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    market.account("alice")
    market.order("alice", tmp_path / "alice.cpu")
    job = buyer.submit(buyer.upload_program(fsdither), [sample_image(8, 8)])[0]
    status_file = tmp_path / "status" / "alice.json"
    rename = os.replace

    def rename_then_sigterm(source: str, target: Path) -> None:
        """SIGTERM right after the status file says `running`: the lease is in hand."""
        rename(source, target)
        if Path(target) == status_file and json.loads(status_file.read_text())["state"] == (
            "running"
        ):
            signal.raise_signal(signal.SIGTERM)

    console = io.StringIO()
    options = SellerOptions(status_dir=tmp_path / "status", wait=1)
    seller = Seller(load_order(tmp_path / "alice.cpu"), tmp_path / "alice.cpu", options, console)
    previous = signal.signal(signal.SIGTERM, stop_on_signal)
    monkeypatch.setattr(os, "replace", rename_then_sigterm)
    try:
        with pytest.raises(SystemExit) as stopped:
            seller.run()
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert stopped.value.code == 128 + signal.SIGTERM
    assert f"event=lease-released order={seller.order.order_id} job={job}" in console.getvalue()
    with sqlite3.connect(market.db) as db:
        rows = db.execute("SELECT released IS NOT NULL FROM leases WHERE job_id = ?", (job,))
        assert rows.fetchall() == [(1,)]
    assert json.loads(status_file.read_text())["state"] == "stopped"
