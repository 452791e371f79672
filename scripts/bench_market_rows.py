"""What PostgreSQL writes for each lease + result round trip of the market: the rows each
table took (inserted, updated, of those updated how many HOT: the new version kept on its
page and no index written), each index's scans and the index entries they read, the WAL
records and bytes, and the commits.

A round trip's cost on PostgreSQL is mostly these writes and lookups, not the number of
statements: an update that changes a column an index names (or its condition) writes an
entry into every index of the table, and an index scan reads an entry (and visits its
heap row) for every version it still points to. One run of bench_market's scale part (200
sellers, one instance) on a fresh database, its statistics reset when the clock starts.
WAL figures are the whole server's (other databases' writes count too).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import psycopg
from bench_market import (
    DEFAULT_POSTGRES,
    QUEUED_PER_SECOND,
    fill_queue,
    load_average,
    measure,
    running_market,
)

# The statistics collector's counters reach the views a moment after the transactions.
FLUSH_SECONDS = 0.7


def _counters(conn: psycopg.Connection[Any]) -> tuple[str, int, int]:
    """(WAL position, WAL records so far, commits of this database so far)."""
    lsn = conn.execute("SELECT pg_current_wal_lsn()").fetchone()
    wal = conn.execute("SELECT wal_records FROM pg_stat_wal").fetchone()
    commits = conn.execute(
        "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
    ).fetchone()
    assert lsn is not None and wal is not None and commits is not None
    return str(lsn[0]), int(wal[0]), int(commits[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of the run")
    parser.add_argument("--sellers", type=int, default=200, help="simulated seller seats")
    parser.add_argument("--single", action="store_true", help="one seat a request, not 4")
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, metavar="URL")
    args = parser.parse_args()
    batch = not args.single
    with running_market(args.sellers, args.postgres) as market:
        fill_queue(market, int((1 + args.seconds) * QUEUED_PER_SECOND[batch]))
        assert isinstance(market.db, str)
        with psycopg.connect(market.db, autocommit=True) as conn:
            conn.execute("SELECT pg_stat_reset()")
            before = _counters(conn)
        figures = measure(market, args.seconds, batch, warm_up=0.0)
        trips = figures.rate * args.seconds
        time.sleep(FLUSH_SECONDS)
        with psycopg.connect(market.db, autocommit=True) as conn:
            after = _counters(conn)
            wal_bytes = conn.execute(
                "SELECT pg_wal_lsn_diff(%s, %s)", (after[0], before[0])
            ).fetchone()
            tables = conn.execute(
                "SELECT relname, n_tup_ins, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables "
                "WHERE n_tup_ins + n_tup_upd > 0 ORDER BY relname"
            ).fetchall()
            indexes = conn.execute(
                "SELECT relname, indexrelname, idx_scan, idx_tup_read FROM pg_stat_user_indexes "
                "WHERE idx_scan > 0 ORDER BY relname, indexrelname"
            ).fetchall()
    assert wal_bytes is not None
    print(
        f"market PostgreSQL {'batch' if batch else 'single'}, {args.sellers} sellers: "
        f"{figures.rate:.0f} round trips/s, CPU per round trip: market "
        f"{figures.market_ms:.3f} ms, PostgreSQL {figures.postgres_ms:.3f} ms; load "
        f"{load_average()}"
    )
    print(
        f"per round trip: WAL {float(wal_bytes[0]) / trips:.0f} bytes, "
        f"{(after[1] - before[1]) / trips:.1f} records; {(after[2] - before[2]) / trips:.3f} "
        "commits"
    )
    for name, inserted, updated, hot in tables:
        print(
            f"  {name:16} rows per round trip: inserted {inserted / trips:5.2f}, "
            f"updated {updated / trips:5.2f} (HOT {hot / trips:5.2f})"
        )
    for table, name, scans, read in indexes:
        print(
            f"  {table:16} {name:24} scans per round trip {scans / trips:5.2f}, "
            f"entries read {read / trips:6.2f}"
        )


if __name__ == "__main__":
    main()
