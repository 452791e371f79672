"""What the market tells about itself: to an account, its own figures (`/v1/status`); to
anyone, totals and the leaderboard of the accounts that chose to be on it (`/v1/stats`).

No document shows one account's balance or jobs to another, unless that account opted in
to the leaderboard (`livecd market account leaderboard NAME`).
"""

from __future__ import annotations

from collections.abc import Iterable

from market import accounts
from market.dialect import Connection

# Public figures are computed at most this often, however often they are asked for:
# the document needs no credentials, so its cost must not grow with its callers.
STATS_SECONDS = 5.0
LEADERBOARD_SIZE = 20
# A seller seen within this many seconds counts as live: in an account's status and on
# the home page's figures.
SELLER_SEEN_SECONDS = 600.0
LEADERBOARD_SETTING = "leaderboard:"


def _job_states(rows: Iterable[tuple[str, int]]) -> dict[str, int]:
    states = dict.fromkeys(("open", "done", "failed"), 0)
    states.update(rows)
    return states


def account_coins(conn: Connection, account: int) -> float:
    """The account's balance of CPUCoins (`market.ledger`: its reservations are apart)."""
    row = conn.execute("SELECT millicoins FROM accounts WHERE id = ?", (account,)).fetchone()
    return int(row[0]) / 1000


def own_orders(conn: Connection, account: int) -> set[str]:
    rows = conn.execute("SELECT id FROM orders WHERE account_id = ?", (account,)).fetchall()
    return {str(order_id) for (order_id,) in rows}


def own_status(conn: Connection, account: int, now: float) -> dict[str, object]:
    """The account's queue, leases on its jobs, results for it and its coins."""
    name = conn.execute("SELECT name FROM accounts WHERE id = ?", (account,)).fetchone()[0]
    states = conn.execute(
        "SELECT state, count(*) FROM jobs WHERE account_id = ? GROUP BY state", (account,)
    ).fetchall()
    leased = conn.execute(
        "SELECT count(*) FROM leases l JOIN jobs j ON j.id = l.job_id "
        "WHERE l.state = 'active' AND j.account_id = ?",
        (account,),
    ).fetchone()[0]
    last_minute, last_hour = conn.execute(
        "SELECT count(*) FILTER (WHERE r.created >= ?), count(*) FROM results r "
        "JOIN jobs j ON j.id = r.job_id WHERE r.created >= ? AND j.account_id = ?",
        (now - 60, now - 3600, account),
    ).fetchone()
    return {
        "account": name,
        "jobs": _job_states(states),
        "leases_active": leased,
        "results_last_minute": last_minute,
        "results_last_hour": last_hour,
        "coins": {name: account_coins(conn, account)},
    }


def public_stats(conn: Connection, now: float) -> dict[str, object]:
    """Market-wide totals and the opted-in leaderboard: nothing about any other account."""
    states = conn.execute("SELECT state, count(*) FROM jobs GROUP BY state").fetchall()
    leased = conn.execute("SELECT count(*) FROM leases WHERE state = 'active'").fetchone()[0]
    last_minute, last_hour = conn.execute(
        "SELECT count(*) FILTER (WHERE created >= ?), count(*) FROM results WHERE created >= ?",
        (now - 60, now - 3600),
    ).fetchone()
    # Coins paid to sellers (`market.ledger` transfers of kind 'pay'), in all and per account.
    credited = conn.execute(
        "SELECT coalesce(sum(millicoins), 0) FROM transfers WHERE kind = 'pay'"
    ).fetchone()[0]
    board = conn.execute(
        "SELECT a.name, coalesce(sum(t.millicoins), 0) AS m FROM accounts a "
        "JOIN settings s ON s.key = ? || a.name AND s.value = 'on' "
        "LEFT JOIN transfers t ON t.kind = 'pay' AND t.target = 'a:' || a.id "
        "GROUP BY a.id ORDER BY m DESC, a.name LIMIT ?",
        (LEADERBOARD_SETTING, LEADERBOARD_SIZE),
    ).fetchall()
    return {
        "jobs": _job_states(states),
        "leases_active": leased,
        "results_last_minute": last_minute,
        "results_last_hour": last_hour,
        "coins_credited": int(credited) / 1000,
        "leaderboard": [{"account": name, "coins": m / 1000} for name, m in board],
    }


def set_leaderboard(conn: Connection, name: str, on: bool) -> None:
    """Put the account on the public leaderboard, or take it off."""
    accounts.account_id(conn, name)  # NotFound for an unknown account
    accounts.set_setting(conn, LEADERBOARD_SETTING + name, "on" if on else None)


class PublicStats:
    """public_stats(), computed again only when STATS_SECONDS have passed."""

    def __init__(self) -> None:
        self._doc: dict[str, object] = {}
        self._at = float("-inf")

    def get(self, conn: Connection, now: float) -> dict[str, object]:
        if not 0 <= now - self._at < STATS_SECONDS:
            self._doc = public_stats(conn, now)
            self._at = now
        return self._doc
