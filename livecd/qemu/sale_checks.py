"""The checks of a sale, each a list of problems (empty when it passed): every job has an
accepted result equal, bit for bit, to the Python reference; the order's account was paid
exactly what the market's ledger says its accepted results earned; one seller ran per vCPU
at the order's nice level."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Mapping

from cpushare.order import SellOrder
from livecd.qemu.events import ConsoleEvents
from livecd.qemu.sale_market import BUYER, BUYER_COINS, VOLUNTEER, SaleMarket
from livecd.sdk.dither import dither
from market import admin


def result_problems(
    market: SaleMarket, inputs: Mapping[int, bytes], done: Mapping[int, object]
) -> list[str]:
    """Jobs without an accepted result, or whose result is not the reference's bytes."""
    problems = []
    for job, pgm in inputs.items():
        if job not in done:
            problems.append(f"job {job} has no accepted result")
        elif market.buyer.output(job) != dither(pgm):
            problems.append(f"job {job}: the accepted result differs from the Python reference")
    return problems


def coin_problems(market: SaleMarket, done: Mapping[int, Mapping[str, object]]) -> list[str]:
    """The volunteer's account holds exactly what the ledger paid its accepted results of
    the `done` jobs, each at least one millicoin and at most its own CPU claim; the buyer
    paid and earned nothing; the books balance."""
    with contextlib.closing(sqlite3.connect(market.process.db)) as conn:
        paid = conn.execute(
            "SELECT r.job_id, r.cpu_seconds, t.millicoins FROM results r "
            "JOIN orders o ON o.id = r.order_id JOIN accounts a ON a.id = o.account_id "
            "LEFT JOIN transfers t ON t.result_id = r.id AND t.kind = 'pay' "
            "WHERE a.name = ? AND r.verdict = 'accepted'",
            (VOLUNTEER,),
        ).fetchall()
    coins = market.coins()
    problems = []
    for job, claim, millicoins in paid:
        if job not in done:
            continue
        if millicoins is None or not 1 <= millicoins <= max(1, round(1000 * claim)):
            problems.append(
                f"job {job}: the volunteer was paid {millicoins} millicoins "
                f"for a result claiming {claim:.3f} CPU seconds"
            )
    earned = sum(m or 0 for job, _, m in paid if job in done)
    if round(1000 * coins.get(VOLUNTEER, 0.0)) != earned:
        problems.append(
            f"account {VOLUNTEER} holds {coins.get(VOLUNTEER, 0.0):.3f} coins, "
            f"not the {earned / 1000:.3f} its accepted results earned"
        )
    if coins.get(BUYER, 0.0) > BUYER_COINS:
        problems.append(f"the buyer's account {BUYER} was credited {coins[BUYER]:.3f} coins")
    problems += admin.check_ledger(market.process.db)
    return problems


def seller_problems(console: ConsoleEvents, cpus: int, order: SellOrder) -> list[str]:
    """One seller per vCPU for `order`, each at the order's nice level."""
    started = console.find("seller-started")
    problems = []
    for e in started:
        if e.fields.get("order") != order.order_id:
            problems.append(f"a seller started for order {e.fields.get('order')}, not ours")
        if e.fields.get("nice") != str(order.nice):
            problems.append(
                f"the seller on cpu {e.fields.get('cpu')} runs at nice "
                f"{e.fields.get('nice')}, not {order.nice}"
            )
    on_cpus = sorted({e.fields.get("cpu", "?") for e in started})
    wanted = [str(cpu) for cpu in range(cpus)]
    if on_cpus != wanted:
        problems.append(f"sellers ran on cpus {on_cpus or 'none'}, not one on each of {wanted}")
    return problems
