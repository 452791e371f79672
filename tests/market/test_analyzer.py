"""The planner's statistics keeper (market.pgstore.Analyzer) on PostgreSQL: one works per
database, whichever the market instances sharing it start."""

from __future__ import annotations

import time

import psycopg
import pytest
from polling import until

from market.dialect import Location
from market.pgstore import ANALYZE_EVERY, ANALYZE_ROWS, ANALYZER_LOCK, Analyzer

pytestmark = pytest.mark.parametrize("market_backend", ["postgres"])


def _holders(conn: psycopg.Connection[tuple[int]]) -> list[int]:
    """The server processes holding the Analyzer's lock."""
    rows = conn.execute(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        "AND (classid::bigint << 32) + objid::bigint = %s",
        (ANALYZER_LOCK,),
    ).fetchall()
    return [row[0] for row in rows]


def test_one_analyzer_per_database_keeps_statistics_and_another_takes_over(
    market_location: Location,
) -> None:
    assert isinstance(market_location, str)
    with psycopg.connect(market_location, autocommit=True) as conn:
        # Autovacuum would analyze it too, sooner or later: the Analyzers are alone here.
        conn.execute("ALTER TABLE settings SET (autovacuum_enabled = false)")
        analyzers = [Analyzer(market_location)]
        try:
            until(lambda: len(_holders(conn)) == 1, "the lock held by the first analyzer", 30)
            (first,) = _holders(conn)
            analyzers.append(Analyzer(market_location))
            _insert_settings(conn, ANALYZE_ROWS)
            # Changed by more rows than it holds, and ANALYZE_ROWS more: stale.
            for _ in range(3):
                conn.execute("UPDATE settings SET value = value || 'w'")
            until(lambda: _analyzed(conn), "the settings analyzed", 30)
            time.sleep(2 * ANALYZE_EVERY)  # the second has tried for the lock meanwhile
            assert _holders(conn) == [first]
            analyzers.pop(0).close()  # its instance stops: the other takes over
            until(lambda: len(set(_holders(conn)) - {first}) == 1, "the lock taken over", 30)
        finally:
            for analyzer in analyzers:
                analyzer.close()


def test_a_table_only_inserted_into_is_analyzed_once_it_grew(market_location: Location) -> None:
    """Rows only inserted (as results and transfers are) make a table stale too: counted
    against the rows it held when last analyzed, not against its rows now, which count
    the new ones as well (then it never was, and the writer's plans kept treating a
    table grown from nothing as empty: a whole scan of it per lookup by key)."""
    assert isinstance(market_location, str)
    with psycopg.connect(market_location, autocommit=True) as conn:
        # Autovacuum would analyze it too, sooner or later: the Analyzer's alone here.
        conn.execute("ALTER TABLE settings SET (autovacuum_enabled = false)")
        analyzer = Analyzer(market_location)
        try:
            _insert_settings(conn, ANALYZE_ROWS + 1)

            until(lambda: _analyzed(conn), "the settings analyzed", 30)
        finally:
            analyzer.close()


def _insert_settings(conn: psycopg.Connection[tuple[object, ...]], rows: int) -> None:
    conn.execute(
        "INSERT INTO settings (key, value) SELECT 'k' || n, 'v' FROM generate_series(1, %s) AS n",
        (rows,),
    )


def _analyzed(conn: psycopg.Connection[tuple[object, ...]]) -> bool:
    row = conn.execute(
        "SELECT analyze_count FROM pg_stat_user_tables WHERE relname = 'settings'"
    ).fetchone()
    return row is not None and row[0] > 0
