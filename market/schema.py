"""The market's SQLite schema, versioned with `PRAGMA user_version` and migrated on open."""

from __future__ import annotations

import sqlite3

# Each entry moves the schema from version i to i + 1; never edit a released entry, append.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE settings (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE accounts (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        key_hash TEXT NOT NULL UNIQUE,
        created REAL NOT NULL
    );
    CREATE TABLE orders (
        id TEXT PRIMARY KEY,
        account_id INTEGER NOT NULL REFERENCES accounts(id),
        secret_hash TEXT NOT NULL,
        created REAL NOT NULL
    );
    CREATE TABLE programs (
        sha256 TEXT PRIMARY KEY,
        size INTEGER NOT NULL,
        data BLOB NOT NULL,
        account_id INTEGER NOT NULL REFERENCES accounts(id),
        created REAL NOT NULL
    );
    CREATE TABLE jobs (
        id INTEGER PRIMARY KEY,
        account_id INTEGER NOT NULL REFERENCES accounts(id),
        program TEXT NOT NULL REFERENCES programs(sha256),
        input BLOB NOT NULL,
        cpu_seconds INTEGER NOT NULL,
        wall_seconds REAL NOT NULL,
        memory_bytes INTEGER NOT NULL,
        output_bytes INTEGER NOT NULL,
        replicas INTEGER NOT NULL,
        max_results INTEGER NOT NULL,
        state TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'done', 'failed')),
        -- How many more leases may be handed out right now.
        slots INTEGER NOT NULL,
        outcome TEXT,
        exit_status INTEGER,
        output_sha256 TEXT,
        created REAL NOT NULL,
        finished REAL
    );
    CREATE INDEX jobs_ready ON jobs(id) WHERE state = 'open' AND slots > 0;
    CREATE INDEX jobs_account ON jobs(account_id, id);
    CREATE TABLE leases (
        id INTEGER PRIMARY KEY,
        job_id INTEGER NOT NULL REFERENCES jobs(id),
        order_id TEXT NOT NULL REFERENCES orders(id),
        seller TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('active', 'done', 'expired')),
        created REAL NOT NULL,
        deadline REAL NOT NULL
    );
    CREATE INDEX leases_job ON leases(job_id, order_id);
    CREATE INDEX leases_deadline ON leases(deadline) WHERE state = 'active';
    CREATE TABLE results (
        id INTEGER PRIMARY KEY,
        -- One result per lease: a retried post finds the stored one.
        lease_id INTEGER NOT NULL UNIQUE REFERENCES leases(id),
        job_id INTEGER NOT NULL REFERENCES jobs(id),
        order_id TEXT NOT NULL REFERENCES orders(id),
        outcome TEXT NOT NULL,
        exit_status INTEGER,
        output BLOB NOT NULL,
        output_sha256 TEXT NOT NULL,
        cpu_seconds REAL NOT NULL,
        wall_seconds REAL NOT NULL,
        detail TEXT NOT NULL,
        verdict TEXT NOT NULL CHECK (verdict IN ('pending', 'accepted', 'rejected')),
        created REAL NOT NULL
    );
    CREATE INDEX results_job ON results(job_id);
    CREATE INDEX results_created ON results(created);
    CREATE TABLE ledger (
        id INTEGER PRIMARY KEY,
        -- A result is credited at most once, whatever happens above.
        result_id INTEGER NOT NULL UNIQUE REFERENCES results(id),
        account_id INTEGER NOT NULL REFERENCES accounts(id),
        order_id TEXT NOT NULL REFERENCES orders(id),
        millicoins INTEGER NOT NULL CHECK (millicoins > 0),
        created REAL NOT NULL
    );
    CREATE INDEX ledger_account ON ledger(account_id);
    """,
    """
    -- When the seller handed the lease back (it stopped before finishing the job); such
    -- a lease is 'expired' from then on, and its job back in the queue.
    ALTER TABLE leases ADD COLUMN released REAL;
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)


class SchemaTooNew(RuntimeError):
    """The database was written by a newer market than this one."""


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema up to SCHEMA_VERSION, one transaction per step; return the old version."""
    old: int = conn.execute("PRAGMA user_version").fetchone()[0]
    if old > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"the database has schema version {old}, this market knows up to {SCHEMA_VERSION}: "
            "run a newer market"
        )
    for version in range(old, SCHEMA_VERSION):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(MIGRATIONS[version]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return old


def _statements(script: str) -> list[str]:
    # executescript() would commit on its own; splitting keeps each step one transaction.
    statements: list[str] = []
    current = ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    return [s for s in statements if s]
