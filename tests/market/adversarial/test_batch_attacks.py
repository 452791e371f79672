"""Attacks through the batch routes (POST /v1/leases, POST /v1/results), tried with raw
HTTP against a real market: batching hoards no more than a host's seats, gets no job twice
to one machine, and posts nothing to another host's lease or past its job's limits."""

from __future__ import annotations

import base64

from livecd.market_process import MarketProcess
from market import admin
from market.buyer import BuyerClient
from tests.market.adversarial.conftest import Fleet

RIGHT = b"P4\n1 1\n\x00"  # a result in the job's format: a 1x1 white PBM


def _result(lease: object, output: bytes = RIGHT, cpu: float = 1.0) -> dict[str, object]:
    return {
        "lease": lease,
        "outcome": "ok",
        "exit_status": 0,
        "output": base64.b64encode(output).decode(),
        "cpu_seconds": cpu,
        "wall_seconds": cpu,
    }


def test_batch_hoarding_is_bounded_by_the_hosts_seats(
    slow_market: MarketProcess, fleet: Fleet, lab: BuyerClient, fsdither: bytes
) -> None:
    lab.submit(lab.upload_program(fsdither), [f"{i}".encode() for i in range(10)], replicas=1)
    hoarder = fleet.seller("mallory", "127.0.0.2", seats=2)
    for seats in ([0, 1, 2], [0, 1, 1], [0, 0], [0, 1, -1], list(range(300))):
        assert hoarder.post("/v1/leases", seats=seats).status_code == 400, seats
    for _ in range(5):  # asking again hands the seats' leases back: never more than two
        assert len(hoarder.post("/v1/leases", seats=[0, 1]).json()["leases"]) == 2
    assert lab.status()["leases_active"] == 2
    honest = fleet.seller("alice", "127.0.0.3", seats=8)
    assert len(honest.post("/v1/leases", seats=list(range(8))).json()["leases"]) == 8


def test_a_batch_gets_no_job_twice_to_one_machine(
    slow_market: MarketProcess, fleet: Fleet, lab: BuyerClient, fsdither: bytes
) -> None:
    # One job wanting two agreeing machines: a host's seats are one machine.
    lab.submit(lab.upload_program(fsdither), [b"in"], replicas=2)
    colluder = fleet.seller("mallory", "127.0.0.2", seats=4)
    leases = colluder.post("/v1/leases", seats=[0, 1, 2, 3]).json()["leases"]
    assert len(leases) == 1
    # Nor through a second host on the same address.
    other = fleet.seller("mallory", "127.0.0.2", seats=2)
    assert other.post("/v1/leases", seats=[0, 1]).status_code == 204


def test_a_batch_cannot_post_to_another_hosts_lease_or_past_the_output_limit(
    slow_market: MarketProcess, fleet: Fleet, lab: BuyerClient, fsdither: bytes
) -> None:
    job = lab.submit(
        lab.upload_program(fsdither), [b"in"], replicas=1, limits={"output_bytes": 64}
    )[0]
    victim = fleet.seller("alice", "127.0.0.2")
    attacker = fleet.seller("mallory", "127.0.0.3")
    lease = victim.post("/v1/leases", seats=[0]).json()["leases"][0]["lease"]
    forged = [_result(lease, b"garbage", cpu=1e9), _result(lease, b"garbage")]
    answers = attacker.post("/v1/results", results=forged).json()["results"]
    assert [a["status"] for a in answers] == [403, 403]
    assert all(a["error"] == f"lease {lease} belongs to another host" for a in answers)
    big = victim.post("/v1/results", results=[_result(lease, b"x" * 65)]).json()["results"]
    assert big[0]["status"] == 413
    honest = victim.post("/v1/results", results=[_result(lease)]).json()["results"][0]
    assert (honest["status"], honest["verdict"]) == (200, "accepted")
    assert lab.output(job) == RIGHT
    coins = {row["name"]: row["coins"] for row in admin.list_accounts(slow_market.db)}  # type: ignore[misc]
    assert coins["mallory"] == 0
    assert admin.check_ledger(slow_market.db) == []
