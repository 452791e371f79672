"""The double-entry ledger of CPUCoins (one coin is one CPU second; amounts in millicoins).

Every movement is one transfer from a book to another: the operator's grants come from
'mint', a submit moves a job's worst case from the buyer's balance ('a:ID') to the job's
reservation ('j:ID'), and the reservation pays the sellers' accounts and refunds the rest
when the job ends. Balances are cached in accounts.millicoins and jobs.reserved for the hot
paths; `check()` recomputes them from the transfers. So the sum of all balances and
reservations is always what the mint gave out, and no account goes below zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from market.dialect import Connection, credit_later, is_postgres
from market.errors import MarketError

MINT = "mint"


class PaymentRequired(MarketError):
    """The buyer's balance does not cover what it asks for."""

    status = 402


def account_book(account_id: int) -> str:
    return f"a:{account_id}"


def job_book(job_id: int) -> str:
    return f"j:{job_id}"


def _apply(conn: Connection, book: str, millicoins: int) -> None:
    kind, _, key = book.partition(":")
    if kind == "a":
        conn.execute(
            "UPDATE accounts SET millicoins = millicoins + ? WHERE id = ?", (millicoins, int(key))
        )
    elif kind == "j":
        conn.execute("UPDATE jobs SET reserved = reserved + ? WHERE id = ?", (millicoins, int(key)))


def transfer(
    conn: Connection,
    kind: str,
    source: str,
    target: str,
    millicoins: int,
    now: float,
    result_id: int | None = None,
) -> None:
    """Move millicoins from one book to another (nothing if the amount is not positive)."""
    if millicoins <= 0:
        return
    conn.execute(
        "INSERT INTO transfers (kind, source, target, millicoins, result_id, created) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (kind, source, target, millicoins, result_id, now),
    )
    _apply(conn, source, -millicoins)
    _apply(conn, target, millicoins)


def balance(conn: Connection, account_id: int) -> int:
    row = conn.execute("SELECT millicoins FROM accounts WHERE id = ?", (account_id,)).fetchone()
    return 0 if row is None else int(row[0])


def grant(conn: Connection, account_id: int, millicoins: int, now: float) -> None:
    """The operator gives an account coins."""
    if millicoins <= 0:
        raise MarketError("a grant must be a positive number of coins")
    transfer(conn, "grant", MINT, account_book(account_id), millicoins, now)


def afford(conn: Connection, account_id: int, millicoins: int) -> None:
    """PaymentRequired unless the account holds `millicoins`."""
    have = balance(conn, account_id)
    if have < millicoins:
        raise PaymentRequired(
            f"this batch needs {millicoins / 1000:.3f} coins held in reserve (each job's CPU "
            f"cap times its most results), and the account holds {have / 1000:.3f}: "
            "ask the market's operator for a grant"
        )


def reserve(conn: Connection, account_id: int, job_id: int, millicoins: int, now: float) -> None:
    transfer(conn, "reserve", account_book(account_id), job_book(job_id), millicoins, now)


class ResultOf(NamedTuple):
    """The result of a lease, named by its lease: stored in this transaction, its id not
    read yet (market.later)."""

    lease_id: int


# A result as a payment names it: its id, or its lease's.
ResultRef = int | ResultOf


# A transfer a settlement makes: (kind, job, account, millicoins, the result it pays).
Move = tuple[str, int, int, int, ResultRef | None]


class Settlement(NamedTuple):
    """A finished job's reservation of `reserved` millicoins, to empty: each (result,
    account, millicoins) of `payments` paid from it in turn, the rest refunded to `buyer`."""

    job_id: int
    buyer: int
    reserved: int
    payments: Sequence[tuple[ResultRef, int, int]]


def settle(
    conn: Connection,
    job_id: int,
    buyer: int,
    reserved: int,
    payments: Sequence[tuple[int, int, int]],
    now: float,
) -> dict[ResultRef, int]:
    """settle_all() for one job."""
    return settle_all(conn, [Settlement(job_id, buyer, reserved, payments)], now)


def settle_all(conn: Connection, jobs: Sequence[Settlement], now: float) -> dict[ResultRef, int]:
    """Empty the reservations of finished jobs: pay each result from its job's reservation
    in turn, never more than it still holds (a job queued before the ledger holds nothing),
    and refund the rest to the job's buyer; return what each result was paid.

    All transfers of all the jobs are one INSERT and all balances one UPDATE (on
    PostgreSQL one for the writer's whole batch: dialect.credit_later), since a result is
    the market's most frequent write and a seller posts several at once; the
    jobs' cached reservations are the caller's to set to 0, in the UPDATE that ends them.
    A result is paid at most once: transfers.result_id is unique. One named by its lease
    (ResultOf) is found by it in the INSERT, whose id need not be read first.
    """
    moves: list[Move] = []
    paid: dict[ResultRef, int] = {}
    for job_id, buyer, left, payments in jobs:
        for result_id, account_id, millicoins in payments:
            amount = max(0, min(millicoins, left))
            paid[result_id] = amount
            left -= amount
            if amount > 0:
                moves.append(("pay", job_id, account_id, amount, result_id))
        if left > 0:
            moves.append(("refund", job_id, buyer, left, None))
    if not moves:
        return paid
    if is_postgres(conn):
        _insert_moves_postgres(conn, moves, now)
    else:
        _insert_moves(conn, moves, now)
    credit: dict[int, int] = {}
    for _, _, account_id, amount, _ in moves:
        credit[account_id] = credit.get(account_id, 0) + amount
    if credit_later(conn, credit):
        return paid
    conn.execute(
        "UPDATE accounts SET millicoins = millicoins + CASE id "
        + " ".join(["WHEN ? THEN ?"] * len(credit))
        + " END WHERE id IN ("
        + ", ".join(["?"] * len(credit))
        + ")",
        [value for item in credit.items() for value in item] + list(credit),
    )
    return paid


def _insert_moves(conn: Connection, moves: list[Move], now: float) -> None:
    """The transfers of `moves`, one INSERT of a row each (a result named by its lease found
    by it)."""
    rows: list[str] = []
    values: list[object] = []
    for kind, job_id, account_id, amount, result in moves:
        if isinstance(result, ResultOf):
            rows.append(_BY_LEASE)
            result = result.lease_id
        else:
            rows.append(_BY_ID)
        values += (kind, job_book(job_id), account_book(account_id), amount, result, now)
    conn.execute(
        "INSERT INTO transfers (kind, source, target, millicoins, result_id, created) "
        f"VALUES {', '.join(rows)}",
        values,
    )


_BY_ID = "(?, ?, ?, ?, ?, ?)"
_BY_LEASE = "(?, ?, ?, ?, (SELECT id FROM results WHERE lease_id = ?), ?)"


# The transfers of a settlement on PostgreSQL: a column's values in one array each, so one
# statement text and plan whatever their number, and seven parameters to bind, not six a
# transfer (the server's CPU for a batch's transfers went from 19 to 15 us a job); a
# result named by its lease (ResultOf) found by it.
_MOVES_POSTGRES = """
    INSERT INTO transfers (kind, source, target, millicoins, result_id, created)
    SELECT m.kind, m.source, m.target, m.millicoins,
           coalesce(m.result_id, (SELECT r.id FROM results r WHERE r.lease_id = m.lease_id)), ?
    FROM unnest(CAST(? AS TEXT[]), CAST(? AS TEXT[]), CAST(? AS TEXT[]), CAST(? AS BIGINT[]),
                CAST(? AS BIGINT[]), CAST(? AS BIGINT[]))
         AS m(kind, source, target, millicoins, result_id, lease_id)
"""


def _insert_moves_postgres(conn: Connection, moves: list[Move], now: float) -> None:
    conn.execute(
        _MOVES_POSTGRES,
        (
            now,
            [kind for kind, *_ in moves],
            [job_book(job_id) for _, job_id, *_ in moves],
            [account_book(account_id) for _, _, account_id, *_ in moves],
            [amount for *_, amount, _ in moves],
            [None if isinstance(result, ResultOf) else result for *_, result in moves],
            [result.lease_id if isinstance(result, ResultOf) else None for *_, result in moves],
        ),
    )


def paid_millicoins(conn: Connection, result_id: int) -> int:
    """What the result earned, in thousandths of a coin (0 if nothing, yet)."""
    row = conn.execute(
        "SELECT millicoins FROM transfers WHERE result_id = ?", (result_id,)
    ).fetchone()
    return 0 if row is None else int(row[0])


def check(conn: Connection) -> list[str]:
    """Every way the books disagree with themselves; empty when they add up."""
    books = dict(
        conn.execute(
            "SELECT book, sum(amount) FROM (SELECT target AS book, millicoins AS amount "
            "FROM transfers UNION ALL SELECT source, -millicoins FROM transfers) AS moves "
            "GROUP BY book"
        ).fetchall()
    )
    problems: list[str] = []
    minted = -books.pop(MINT, 0)
    cached = 0
    for table, prefix, column in (("accounts", "a", "millicoins"), ("jobs", "j", "reserved")):
        for key, value in conn.execute(f"SELECT id, {column} FROM {table}"):
            book = f"{prefix}:{key}"
            cached += value
            if books.pop(book, 0) != value:
                problems.append(f"{book} caches {value} millicoins, its transfers say otherwise")
            if value < 0:
                problems.append(f"{book} is below zero: {value} millicoins")
    problems += [f"transfers name {book}, which does not exist" for book in books]
    if cached != minted:
        problems.append(
            f"balances and reservations hold {cached} millicoins, {minted} were granted"
        )
    stale = conn.execute(
        "SELECT count(*) FROM jobs WHERE state != 'open' AND reserved != 0"
    ).fetchone()[0]
    if stale:
        problems.append(f"{stale} finished jobs still hold a reservation")
    return problems
