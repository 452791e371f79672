"""Issue 11's attacks, each tried as an attacker would against a real market on loopback
with raw HTTP, and each asserted to fail. Machines are told apart by source address."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from livecd.market_process import MarketProcess
from market import admin
from market.buyer import BuyerClient, ClientError
from market.store import connect
from tests.market.adversarial.conftest import Fleet, Seller

GARBAGE = b"garbage"
RIGHT = b"P4\n1 1\n\x00"  # a result in the job's format: a 1x1 white PBM


def _ledger_adds_up(market: MarketProcess) -> None:
    assert admin.check_ledger(market.db) == []


def _coins(market: MarketProcess) -> dict[str, float]:
    return {row["name"]: row["coins"] for row in admin.list_accounts(market.db)}  # type: ignore[misc]


def test_forged_result_from_an_untrusted_host_is_not_accepted_alone(
    slow_market: MarketProcess, fleet: Fleet, lab: BuyerClient, fsdither: bytes
) -> None:
    job = lab.submit(lab.upload_program(fsdither), [b"in"])[0]  # the default: adaptive
    cheat = fleet.seller("mallory", "127.0.0.2")
    lease = cheat.lease().json()["lease"]
    forged = cheat.result(lease, GARBAGE, cpu=1e9).json()
    assert forged["verdict"] == "pending" and forged["coins"] == 0
    assert lab.job(job)["state"] == "open"
    with pytest.raises(ClientError, match="no accepted result"):
        lab.output(job)
    # Two honest machines agree; the forgery loses and earns nothing.
    for source, name in (("127.0.0.3", "alice"), ("127.0.0.4", "bob")):
        honest = fleet.seller(name, source)
        reply = honest.result(honest.lease().json()["lease"], RIGHT, cpu=2.0)
        assert reply.status_code == 200
    assert reply.json()["verdict"] == "accepted"
    assert lab.output(job) == RIGHT
    coins = _coins(slow_market)
    assert coins["mallory"] == 0 and coins["alice"] == coins["bob"] == 2.0
    _ledger_adds_up(slow_market)


def test_stock_order_holder_cannot_post_extend_or_release_another_hosts_lease(
    slow_market: MarketProcess, fleet: Fleet, lab: BuyerClient, fsdither: bytes, tmp_path: Path
) -> None:
    # One public order (as on the stock CD), two machines enrolled with it.
    stock = slow_market.order("alice", tmp_path / "stock.cpu")
    victim = Seller(slow_market, slow_market.enroll(stock, source="127.0.0.2"))
    attacker = Seller(slow_market, slow_market.enroll(stock, source="127.0.0.3"))
    lab.submit(lab.upload_program(fsdither), [b"in"], replicas=1)
    lease = victim.lease().json()["lease"]
    for path in ("result", "extend", "release"):
        body = attacker.result(lease, GARBAGE) if path == "result" else None
        reply = body if body is not None else attacker.post(f"/v1/leases/{lease}/{path}")
        assert reply.status_code == 403, path
        assert reply.json()["error"] == f"lease {lease} belongs to another host"
    # The order itself is no key to the seller routes.
    as_order = requests.post(
        f"{slow_market.url}/v1/leases/{lease}/result",
        json={},
        auth=(stock.order_id, stock.secret),
        timeout=10,
    )
    assert as_order.status_code == 403 and "enroll first" in as_order.json()["error"]
    honest = victim.result(lease, RIGHT).json()
    assert honest["verdict"] == "accepted" and honest["duplicate"] is False


def test_colluding_orders_of_one_account_on_one_address_cannot_agree_on_garbage(
    slow_market: MarketProcess, fleet: Fleet, lab: BuyerClient, fsdither: bytes
) -> None:
    job = lab.submit(lab.upload_program(fsdither), [b"in"], replicas=2)[0]
    first = fleet.seller("mallory", "127.0.0.5")
    second = fleet.seller("mallory", "127.0.0.5")
    lease = first.lease().json()["lease"]
    # The same address never gets the same job twice...
    assert second.lease().status_code == 204
    assert first.result(lease, GARBAGE).json()["verdict"] == "pending"
    assert second.lease().status_code == 204
    # ...and the moment a distinct machine disagrees, the garbage stays unaccepted.
    honest = fleet.seller("alice", "127.0.0.6")
    assert honest.result(honest.lease().json()["lease"], RIGHT).json()["verdict"] == "pending"
    assert lab.job(job)["state"] == "open"
    _ledger_adds_up(slow_market)


def test_inflated_cpu_claims_are_paid_the_smallest_agreeing_claim(
    slow_market: MarketProcess, fleet: Fleet, lab: BuyerClient, fsdither: bytes
) -> None:
    lab.submit(lab.upload_program(fsdither), [b"in"], limits={"cpu_seconds": 60})
    greedy = fleet.seller("mallory", "127.0.0.2")
    honest = fleet.seller("alice", "127.0.0.3")
    greedy_lease = greedy.lease().json()["lease"]
    honest_lease = honest.lease().json()["lease"]
    assert greedy.result(greedy_lease, RIGHT, cpu=1e9).json()["verdict"] == "pending"
    assert honest.result(honest_lease, RIGHT, cpu=1.25).json()["coins"] == 1.25
    coins = _coins(slow_market)
    assert coins["mallory"] == coins["alice"] == 1.25
    _ledger_adds_up(slow_market)


def test_inflated_cpu_claim_accepted_alone_is_paid_at_most_the_median(
    slow_market: MarketProcess, fleet: Fleet, lab: BuyerClient, fsdither: bytes
) -> None:
    program = lab.upload_program(fsdither)
    a, b = fleet.seller("alice", "127.0.0.2"), fleet.seller("bob", "127.0.0.3")
    for _ in range(3):  # validated runs: the program's median is 2 s
        lab.submit(program, [b"in"])
        for seller in (a, b):
            seller.result(seller.lease().json()["lease"], RIGHT, cpu=2.0)
    # A buyer trusting every seller still pays the program's median, not 1e9 s.
    lab.submit(program, [b"in"], replicas=1)
    greedy = fleet.seller("mallory", "127.0.0.4")
    assert greedy.result(greedy.lease().json()["lease"], RIGHT, cpu=1e9).json()["coins"] == 2.0
    _ledger_adds_up(slow_market)


def test_hoarding_is_bounded_by_the_hosts_seats(
    slow_market: MarketProcess, fleet: Fleet, lab: BuyerClient, fsdither: bytes
) -> None:
    lab.submit(lab.upload_program(fsdither), [f"{i}".encode() for i in range(10)], replicas=1)
    hoarder = fleet.seller("mallory", "127.0.0.2", seats=2)
    for _ in range(5):
        for seat in (0, 1):
            assert hoarder.lease(seat).status_code == 200
    assert hoarder.lease(2).status_code == 400
    active = lab.status()["leases_active"]
    assert active == 2
    # The rest stays for everyone else.
    honest = fleet.seller("alice", "127.0.0.3", seats=8)
    assert all(honest.lease(seat).status_code == 200 for seat in range(8))


def test_extension_past_the_wall_clock_limit_is_refused(
    slow_market: MarketProcess, fleet: Fleet, lab: BuyerClient, fsdither: bytes
) -> None:
    lab.submit(lab.upload_program(fsdither), [b"in"], replicas=1)
    squatter = fleet.seller("mallory", "127.0.0.2")
    lease = squatter.lease().json()["lease"]
    assert squatter.post(f"/v1/leases/{lease}/extend").status_code == 200
    # The lease has been held (and extended) for longer than its job may run.
    db = connect(slow_market.db)
    db.execute("UPDATE leases SET created = created - 100000 WHERE id = ?", (lease,))
    db.close()
    refused = squatter.post(f"/v1/leases/{lease}/extend")
    assert refused.status_code == 409 and "wall-clock limit" in refused.json()["error"]


def test_enrollment_flood_is_refused_with_429(
    slow_market: MarketProcess, fleet: Fleet, tmp_path: Path
) -> None:
    order = slow_market.order("mallory", tmp_path / "flood.cpu")
    url = f"{slow_market.url}/v1/hosts"
    session = requests.Session()
    codes = [
        session.post(url, json={}, auth=(order.order_id, order.secret), timeout=10)
        for _ in range(40)
    ]
    refused = [r for r in codes if r.status_code == 429]
    assert len(refused) >= 15 and int(refused[0].headers["Retry-After"]) >= 1
    assert sum(r.status_code == 201 for r in codes) <= 25
    # Another machine still enrolls.
    assert fleet.seller("alice", "127.0.0.7").host.id.startswith("host-")


def test_revoked_host_order_and_disabled_account_are_refused_at_once(
    slow_market: MarketProcess, fleet: Fleet, lab: BuyerClient, fsdither: bytes
) -> None:
    lab.submit(lab.upload_program(fsdither), [b"a", b"b", b"c"], replicas=1)
    by_api = fleet.seller("lab", "127.0.0.2")
    lease = by_api.lease().json()["lease"]
    revoke = lab.session.post(f"{slow_market.url}/v1/hosts/{by_api.host.id}/revoke", timeout=10)
    assert revoke.status_code == 200
    refused = by_api.result(lease, RIGHT)
    assert refused.status_code == 403 and refused.json()["code"] == "revoked"
    # Its lease went back to the queue with the revocation.
    assert lab.status()["leases_active"] == 0
    # Another account cannot revoke this one's hosts.
    mine = fleet.seller("alice", "127.0.0.3")
    other = lab.session.post(f"{slow_market.url}/v1/hosts/{mine.host.id}/revoke", timeout=10)
    assert other.status_code == 404
    assert mine.lease().status_code == 200
    order = admin.list_hosts(slow_market.db)[-1]["order"]
    admin.revoke_order(slow_market.db, str(order))
    time.sleep(1.1)  # the market's credential cache lives 1 s at most
    assert mine.lease().json()["code"] == "revoked"
    disabled = fleet.seller("bob", "127.0.0.4")
    admin.set_account_disabled(slow_market.db, "bob", True)
    time.sleep(1.1)
    assert disabled.lease().json()["code"] == "revoked"
    admin.set_account_disabled(slow_market.db, "lab", True)
    time.sleep(1.1)
    with pytest.raises(ClientError, match="HTTP 403"):
        lab.status()
    admin.set_account_disabled(slow_market.db, "lab", False)
    time.sleep(1.1)
    assert lab.status()["jobs"]["open"] == 3


def test_a_forwarded_for_header_does_not_choose_the_hosts_network(
    slow_market: MarketProcess, fleet: Fleet, tmp_path: Path
) -> None:
    # A QEMU guest reaches the market from 127.0.0.1: no header may make it another network.
    order = slow_market.order("mallory", tmp_path / "spoof.cpu")
    reply = requests.post(
        f"{slow_market.url}/v1/hosts",
        json={},
        auth=(order.order_id, order.secret),
        headers={"X-Forwarded-For": "203.0.113.9", "X-Real-IP": "203.0.113.9"},
        timeout=10,
    )
    assert reply.status_code == 201
    host = next(h for h in admin.list_hosts(slow_market.db) if h["host"] == reply.json()["host"])
    assert host["network"] == "127.0.0.1"


def test_an_order_revoked_by_its_account_stops_its_hosts_and_enrolls_no_more(
    slow_market: MarketProcess, lab: BuyerClient, tmp_path: Path
) -> None:
    order = slow_market.order("lab", tmp_path / "lab.cpu")
    enrolled = Seller(slow_market, slow_market.enroll(order, source="127.0.0.2"))
    assert enrolled.lease().status_code == 204
    revoke = lab.session.post(f"{slow_market.url}/v1/orders/{order.order_id}/revoke", timeout=10)
    assert revoke.status_code == 200
    assert enrolled.lease().json()["code"] == "revoked"  # at once: the API clears the cache
    again = requests.post(
        f"{slow_market.url}/v1/hosts", json={}, auth=(order.order_id, order.secret), timeout=10
    )
    assert again.status_code == 403 and again.json()["code"] == "revoked"
