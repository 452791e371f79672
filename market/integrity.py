"""What the rows of the hot tables must keep to, checked by query rather than on each write.

On PostgreSQL the leases, results and transfers carry no foreign keys and the jobs, leases
and results no CHECK of their states (market.schema, POSTGRES_ONLY): the server checked each
reference with a query and a row lock of its own on every lease and result. Those rows are
written only by the market's statements, from rows they have just read, and no row they
name is ever deleted; `check()` finds any that broke the rules all the same.
"""

from __future__ import annotations

from market.dialect import Connection

# (table, column, referenced table, referenced column) of each reference checked.
REFERENCES = (
    ("leases", "job_id", "jobs", "id"),
    ("leases", "order_id", "orders", "id"),
    ("leases", "host_id", "hosts", "id"),
    ("results", "lease_id", "leases", "id"),
    ("results", "job_id", "jobs", "id"),
    ("results", "order_id", "orders", "id"),
    ("results", "host_id", "hosts", "id"),
    ("transfers", "result_id", "results", "id"),
)

# (table, column, the values it may hold) of each state checked.
STATES = (
    ("jobs", "state", ("open", "done", "failed")),
    ("leases", "state", ("active", "done", "expired")),
    ("results", "verdict", ("pending", "accepted", "rejected")),
    ("transfers", "kind", ("grant", "reserve", "pay", "refund")),
)


def check(conn: Connection) -> list[str]:
    """Every row naming a row that does not exist, or holding a state that is none of its
    column's, and every job not open with slots to lease (the ready jobs' index counts on
    none); empty when all is well."""
    problems: list[str] = []
    for table, column, target, key in REFERENCES:
        rows = conn.execute(
            f"SELECT t.id, t.{column} FROM {table} t WHERE t.{column} IS NOT NULL "
            f"AND NOT EXISTS (SELECT 1 FROM {target} r WHERE r.{key} = t.{column}) "
            "ORDER BY t.id LIMIT 10"
        ).fetchall()
        problems += [
            f"{table} {row_id} names {target} {value!r} in {column}, which does not exist"
            for row_id, value in rows
        ]
    for table, column, allowed in STATES:
        marks = ", ".join(["?"] * len(allowed))
        rows = conn.execute(
            f"SELECT id, {column} FROM {table} WHERE {column} NOT IN ({marks}) "
            "ORDER BY id LIMIT 10",
            allowed,
        ).fetchall()
        problems += [
            f"{table} {row_id} has {column} {value!r}, not one of {', '.join(allowed)}"
            for row_id, value in rows
        ]
    rows = conn.execute(
        "SELECT id, state FROM jobs WHERE slots > 0 AND state != 'open' ORDER BY id LIMIT 10"
    ).fetchall()
    problems += [f"job {job_id} is {state} but has slots to lease" for job_id, state in rows]
    return problems
