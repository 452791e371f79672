"""The ledger: CPUCoins credited to the order account of each accepted result.

Its unique result_id makes crediting idempotent whatever path reaches it twice.
"""

from __future__ import annotations

import sqlite3


def credit(conn: sqlite3.Connection, result_id: int) -> None:
    """Credit an accepted result's order account with CPUCoins, once.

    One coin is one CPU second. Every agreeing result earns the smallest CPU time claimed
    among them, so a seller gains nothing by inflating its own claim.
    """
    conn.execute(
        """
        INSERT INTO ledger (result_id, account_id, order_id, millicoins, created)
        SELECT r.id, o.account_id, r.order_id,
               max(1, CAST(round(1000 * (SELECT min(a.cpu_seconds) FROM results a
                                         WHERE a.job_id = r.job_id AND a.verdict = 'accepted'))
                           AS INTEGER)),
               r.created
        FROM results r JOIN orders o ON o.id = r.order_id
        WHERE r.id = ? AND r.verdict = 'accepted'
        ON CONFLICT (result_id) DO NOTHING
        """,
        (result_id,),
    )


def credited_millicoins(conn: sqlite3.Connection, result_id: int) -> int:
    """What the result earned, in thousandths of a coin (0 if nothing, yet)."""
    row = conn.execute("SELECT millicoins FROM ledger WHERE result_id = ?", (result_id,)).fetchone()
    return 0 if row is None else int(row[0])
