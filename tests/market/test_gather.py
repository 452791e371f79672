"""Single results posted together are recorded by one operation of the store
(market.gather, agreement.record_many_checked), each caller answered as if alone."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from livecd.market_process import MarketProcess
from market import agreement, leasing
from market.buyer import BuyerClient
from market.dialect import Connection
from market.errors import Forbidden, MarketError
from market.gather import Gather
from tests.conftest import RunCoroutine
from tests.market.helpers import LIMITS, host, job, record, result
from tests.market.test_api import _lease, _result, _seller
from tests.market.test_statements import ALONE, engine, statements


def test_items_handed_in_together_are_run_together_and_answered_each(
    run_coroutine: RunCoroutine,
) -> None:
    runs: list[list[int]] = []

    async def run(items: list[int]) -> list[int | Exception]:
        runs.append(items)
        await asyncio.sleep(0)
        return [MarketError(f"no {i}") if i == 3 else i * 10 for i in items]

    async def main() -> tuple[list[int | BaseException], list[int | Exception]]:
        gather: Gather[int, int] = Gather(run)
        together = await asyncio.gather(
            *(gather.submit(i) for i in range(5)), return_exceptions=True
        )
        later = await gather.submit(7)
        several = await gather.submit_all([8, 3, 9])
        return [*together, later], several

    answers, several = run_coroutine(main())
    assert runs == [[0, 1, 2, 3, 4], [7], [8, 3, 9]]
    assert answers[:3] == [0, 10, 20] and answers[4:] == [40, 70]
    assert isinstance(answers[3], MarketError) and str(answers[3]) == "no 3"
    assert several[0] == 80 and several[2] == 90 and isinstance(several[1], MarketError)


def test_an_error_of_the_run_reaches_every_caller(run_coroutine: RunCoroutine) -> None:
    async def run(items: list[int]) -> list[int | Exception]:
        raise RuntimeError("the database is away")

    async def main() -> list[int | BaseException]:
        gather: Gather[int, int] = Gather(run)
        return await asyncio.gather(*(gather.submit(i) for i in range(3)), return_exceptions=True)

    answers = run_coroutine(main())
    assert [str(a) for a in answers] == ["the database is away"] * 3


def test_a_run_that_answers_too_few_fails_every_caller_rather_than_leaving_them(
    run_coroutine: RunCoroutine,
) -> None:
    async def run(items: list[int]) -> list[int | Exception]:
        return items[:-1]

    async def main() -> list[int | BaseException]:
        gather: Gather[int, int] = Gather(run)
        calls = (gather.submit(i) for i in range(3))
        return await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 10)

    answers = run_coroutine(main())
    assert [type(a) for a in answers] == [AssertionError] * 3


def test_results_of_several_hosts_cost_the_statements_of_one(conn: Connection) -> None:
    networks = ("10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4")
    sellers = [
        host(conn, name, net)
        for name, net in zip(("alice", "bob", "mallory", "bob"), networks, strict=True)
    ]
    leases = []
    for seller in sellers:
        job(conn, replicas=1)
        lease = leasing.grant_lease(conn, seller, 0, LIMITS, 60, 0)
        assert lease is not None
        leases.append(lease)
    posted = [
        (s.id, lease.id, result(b"out")) for s, lease in zip(sellers[:3], leases, strict=False)
    ]
    # mallory posts the lease of bob's second host: refused, the others kept.
    posted.append((sellers[2].id, leases[3].id, result(b"forged")))
    recorded: list[list[agreement.Recorded | MarketError]] = []
    ran = statements(conn, lambda: recorded.append(record(conn, posted, 1)))
    assert len(ran) == ALONE[engine(conn)]
    answers = recorded[0]
    verdicts = [a.verdict for a in answers[:3] if isinstance(a, agreement.Recorded)]
    assert verdicts == ["accepted"] * 3
    assert isinstance(answers[3], Forbidden)


def test_results_posted_at_once_get_their_own_answers(
    buyer: BuyerClient, market: MarketProcess, fsdither: bytes, tmp_path: Path
) -> None:
    sellers = [_seller(market, tmp_path) for _ in range(6)]
    buyer.submit(buyer.upload_program(fsdither), [b"in"] * 6, replicas=1)
    leases = [_lease(market, seller).json()["lease"] for seller in sellers]
    posts = [(seller, lease, b"out") for seller, lease in zip(sellers, leases, strict=True)]
    posts.append((sellers[1], leases[0], b"forged"))  # another host's lease
    answers: list[tuple[int, dict[str, object]]] = [(0, {})] * len(posts)
    start = threading.Barrier(len(posts))

    def post(n: int) -> None:
        seller, lease, output = posts[n]
        start.wait()
        reply = _result(market, seller, lease, output)
        answers[n] = (reply.status_code, reply.json())

    threads = [threading.Thread(target=post, args=(n,)) for n in range(len(posts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [status for status, _ in answers] == [200] * 6 + [403]
    assert all(doc["verdict"] == "accepted" for _, doc in answers[:6])
    assert len({doc["result"] for _, doc in answers[:6]}) == 6
    assert answers[6][1] == {"error": f"lease {leases[0]} belongs to another host"}
