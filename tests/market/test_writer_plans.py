"""The writer's plans on PostgreSQL: generic plans, made once with the statistics of their
moment, still read only the rows their keys name once the tables have grown past them."""

from __future__ import annotations

from typing import Any

import pytest

from market import agreement, pgpipe, pgstore
from market.dialect import Connection, Location
from tests.market.helpers import host, job

pytestmark = pytest.mark.parametrize("market_backend", ["postgres"])

JOBS = 20_000
POSTED = 50


def _rows_read(plan: dict[str, Any], table: str) -> int:
    """Rows the nodes of an EXPLAIN (ANALYZE, FORMAT JSON) plan read from `table`."""
    own = plan["Actual Rows"] * plan["Actual Loops"] if plan.get("Relation Name") == table else 0
    return own + sum(_rows_read(child, table) for child in plan.get("Plans", []))


def test_results_read_only_their_own_jobs_however_far_the_queue_went(
    market_location: Location, conn: Connection
) -> None:
    """Job ids only grow. A merge join of the results' leases with jobs walks jobs from
    the first id ever, and PostgreSQL expected it to stop where the leases' ids stood at
    their last ANALYZE: each batch of results read every job below its own."""
    assert isinstance(market_location, str)
    seller = host(conn, "alice", "10.0.0.1")
    job(conn, replicas=1)
    columns = (
        "account_id, program, input, cpu_seconds, wall_seconds, memory_bytes, output_bytes, "
        "replicas, max_results, state, slots, created, adaptive, reserved"
    )
    conn.execute(
        f"INSERT INTO jobs ({columns}) SELECT {columns} FROM "
        "generate_series(2, CAST(? AS INTEGER)) AS n, "
        "(SELECT * FROM jobs ORDER BY id LIMIT 1) AS first",
        (JOBS,),
    )
    lease = (
        "INSERT INTO leases (job_id, order_id, seller, state, created, deadline, host_id, "
        "seat, network, solo) SELECT n, ?, '0', 'done', 0, 0, ?, 0, ?, 0 "
        "FROM generate_series(CAST(? AS INTEGER), CAST(? AS INTEGER)) AS n"
    )
    # The statistics of a market young then: its first thousand jobs leased.
    conn.execute(lease, (seller.order_id, seller.id, seller.network, 1, 1000))
    conn.execute("ANALYZE")
    # Now: the newest jobs leased, their results posted together.
    conn.execute(lease, (seller.order_id, seller.id, seller.network, JOBS - POSTED + 1, JOBS))
    leases = [
        row[0] for row in conn.execute("SELECT id FROM leases ORDER BY id DESC LIMIT ?", (POSTED,))
    ]
    writer = pgstore.connect(market_location, writer=True)
    try:
        sql = pgpipe.numbered(agreement._leases_and_jobs(POSTED, False)).decode()
        writer.raw.execute(f"PREPARE posted AS {sql}")
        ids = ", ".join(str(int(lease)) for lease in leases)
        row = writer.raw.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE posted({ids})").fetchone()
    finally:
        writer.close()
    assert row is not None
    assert _rows_read(row[0][0]["Plan"], "jobs") == POSTED
