"""Balances credited once per transaction on PostgreSQL (dialect.credit_later): every
result pays its seller and refunds its buyer, and PostgreSQL updating the same account row
once per result walked all the row's versions of the transaction each time. The credits
held must read as applied, be applied before COMMIT, and go with a rollback."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from market import accounts, ledger
from market.dialect import Connection, Location, credit_later, is_postgres
from market.errors import MarketError
from market.store import Store
from tests.market.helpers import COINS, job, market_db


def _settle(conn: Connection, job_id: int, buyer: int, seller: int) -> None:
    """End a job as a result accepted alone does: 3 millicoins paid, the rest refunded."""
    (reserved,) = conn.execute("SELECT reserved FROM jobs WHERE id = ?", (job_id,)).fetchone()
    ledger.settle(conn, job_id, buyer, reserved, [(ledger.ResultOf(job_id), seller, 3)], 1)
    conn.execute("UPDATE jobs SET state = 'done', slots = 0, reserved = 0 WHERE id = ?", (job_id,))


def _updates(conn: Connection) -> int:
    """Rows of accounts this transaction updated so far (PostgreSQL); the table is named
    by a parameter: a statement naming it applies the credits held first."""
    row = conn.execute(
        "SELECT n_tup_upd FROM pg_stat_xact_user_tables WHERE relname = ?", ("accounts",)
    ).fetchone()
    return int(row[0])


def test_credits_are_applied_once_and_read_as_applied(conn: Connection) -> None:
    lab, alice = accounts.account_id(conn, "lab"), accounts.account_id(conn, "alice")
    jobs = [job(conn, replicas=1) for _ in range(10)]
    conn.execute("BEGIN")
    before = _updates(conn) if is_postgres(conn) else 0
    for job_id in jobs:
        _settle(conn, job_id, lab, alice)
    if is_postgres(conn):
        assert _updates(conn) == before  # held: nothing written to accounts yet
    assert ledger.balance(conn, alice) == 30  # read as applied
    if is_postgres(conn):
        assert _updates(conn) - before == 2  # each account's row once
    conn.execute("COMMIT")
    assert ledger.balance(conn, lab) == COINS - 30
    assert ledger.check(conn) == []


def test_a_rollback_drops_the_credits_held_and_a_savepoint_keeps_those_before(
    conn: Connection,
) -> None:
    lab, alice = accounts.account_id(conn, "lab"), accounts.account_id(conn, "alice")
    conn.execute("BEGIN")
    held = credit_later(conn, {alice: 7})
    assert held == is_postgres(conn)  # SQLite: the caller updates the row itself
    if not held:
        conn.execute("ROLLBACK")
        return
    conn.execute("SAVEPOINT op")
    assert credit_later(conn, {alice: 100, lab: 1})
    conn.execute("ROLLBACK TO op")
    conn.execute("RELEASE op")
    conn.execute("COMMIT")
    assert ledger.balance(conn, alice) == 7
    assert ledger.balance(conn, lab) == COINS
    conn.execute("BEGIN")
    assert credit_later(conn, {alice: 5})
    conn.execute("ROLLBACK")
    assert ledger.balance(conn, alice) == 7
    # Outside a transaction nothing is held: the caller updates the balance itself.
    assert not credit_later(conn, {alice: 1})


def test_the_writers_batches_pay_every_result_but_a_failed_ones(market_location: Location) -> None:
    """Operations settling jobs in the writer's batches, one of which fails after it
    settled: the batch is run again with each in a savepoint, and only its credits go."""
    store = Store(market_location)
    try:
        lab, alice = store.write_sync(
            lambda c: (
                market_db(c),
                accounts.account_id(c, "lab"),
                accounts.account_id(c, "alice"),
            )[1:]
        )
        jobs = store.write_sync(lambda c: [job(c, replicas=1) for _ in range(40)])

        def settle(conn: Connection, job_id: int) -> None:
            _settle(conn, job_id, lab, alice)
            if job_id == jobs[13]:
                raise MarketError("refused after settling")

        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(store.write_sync, lambda c, j=j: settle(c, j)) for j in jobs]
            errors = [future.exception() for future in futures]
        assert [str(e) for e in errors if e is not None] == ["refused after settling"]
        assert store.write_sync(lambda c: ledger.balance(c, alice)) == 3 * 39
        assert store.write_sync(ledger.check) == []
    finally:
        store.close()
