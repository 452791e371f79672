"""The market's schema, versioned and migrated on open: on SQLite with `PRAGMA
user_version`, on PostgreSQL in the table `schema_version`, with the same version numbers.

The steps are written for SQLite; PostgreSQL runs the same steps with its own names for
the column types (`pg_ddl`), so both engines hold the same tables, keys and indexes;
PostgreSQL then drops the reference and state checks of the hot tables (POSTGRES_ONLY),
which market.integrity checks instead.
"""

from __future__ import annotations

import re
import sqlite3

from market.dialect import Connection

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
    """
    -- Trust: a host is one machine, enrolled with an order; it leases, posts
    -- and is trusted per program on its own. Its network (an IPv4 address or an IPv6 /64
    -- it enrolled from) is what agreement counts: one network cannot agree with itself.
    CREATE TABLE hosts (
        id TEXT PRIMARY KEY,
        order_id TEXT NOT NULL REFERENCES orders(id),
        secret_hash TEXT NOT NULL,
        seats INTEGER NOT NULL,
        network TEXT NOT NULL,
        created REAL NOT NULL,
        revoked REAL
    );
    CREATE INDEX hosts_order ON hosts(order_id);
    ALTER TABLE orders ADD COLUMN revoked REAL;
    ALTER TABLE accounts ADD COLUMN disabled REAL;
    -- The account's balance in millicoins: a cache of the transfers, checked by ledger.check.
    ALTER TABLE accounts ADD COLUMN millicoins INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE leases ADD COLUMN host_id TEXT REFERENCES hosts(id);
    ALTER TABLE leases ADD COLUMN seat INTEGER;
    ALTER TABLE leases ADD COLUMN network TEXT;
    -- Leased to a trusted host whose result will stand alone (adaptive replication).
    ALTER TABLE leases ADD COLUMN solo INTEGER NOT NULL DEFAULT 0;
    CREATE UNIQUE INDEX leases_seat ON leases(host_id, seat) WHERE state = 'active';
    CREATE INDEX leases_network ON leases(job_id, network);
    CREATE INDEX leases_host ON leases(host_id) WHERE state = 'active';
    ALTER TABLE results ADD COLUMN host_id TEXT REFERENCES hosts(id);
    ALTER TABLE results ADD COLUMN network TEXT;
    ALTER TABLE results ADD COLUMN solo INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE results ADD COLUMN program TEXT;
    CREATE INDEX results_program ON results(program, id) WHERE verdict = 'accepted' AND solo = 0;
    -- 1: adaptive replication (replicas is the quorum of untrusted hosts); 0: fixed.
    ALTER TABLE jobs ADD COLUMN adaptive INTEGER NOT NULL DEFAULT 0;
    -- Millicoins held for the job (a cache of the transfers, like accounts.millicoins).
    ALTER TABLE jobs ADD COLUMN reserved INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE jobs ADD COLUMN cancelled REAL;
    -- Consecutive valid results of a host per program (BOINC's adaptive replication).
    CREATE TABLE trust (
        host_id TEXT NOT NULL REFERENCES hosts(id),
        program TEXT NOT NULL,
        valid INTEGER NOT NULL,
        PRIMARY KEY (host_id, program)
    ) WITHOUT ROWID;
    -- The double-entry ledger: each transfer moves millicoins from one book to another.
    -- Books: 'mint' (the operator's grants), 'a:ID' (an account's balance), 'j:ID' (a
    -- job's reservation). Every book's balance is the sum of what it received minus what
    -- it gave, so the sum over all books is always zero.
    CREATE TABLE transfers (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('grant', 'reserve', 'pay', 'refund')),
        source TEXT NOT NULL,
        target TEXT NOT NULL,
        millicoins INTEGER NOT NULL CHECK (millicoins > 0),
        -- A result is paid at most once, whatever path reaches it twice.
        result_id INTEGER UNIQUE REFERENCES results(id),
        created REAL NOT NULL
    );
    CREATE INDEX transfers_source ON transfers(source);
    CREATE INDEX transfers_target ON transfers(target);
    -- Coins credited before the ledger become grants, so the books balance from the start.
    INSERT INTO transfers (kind, source, target, millicoins, created)
        SELECT 'grant', 'mint', 'a:' || account_id, millicoins, created FROM ledger;
    UPDATE accounts SET millicoins =
        (SELECT coalesce(sum(millicoins), 0) FROM ledger WHERE ledger.account_id = accounts.id);
    DROP TABLE ledger;
    """,
    """
    -- A program's bytes are shared by every account that uploaded them; each may run and
    -- read them, no other (market.access).
    CREATE TABLE program_owners (
        sha256 TEXT NOT NULL REFERENCES programs(sha256),
        account_id INTEGER NOT NULL REFERENCES accounts(id),
        PRIMARY KEY (sha256, account_id)
    ) WITHOUT ROWID;
    INSERT INTO program_owners (sha256, account_id) SELECT sha256, account_id FROM programs;
    """,
    """
    -- The web portal: a password to sign in with (scrypt; its salt and parameters are in
    -- the string), operators, API keys made and revoked from the pages (the account's
    -- first key stays in accounts.key_hash), signed-in browsers, and batches of jobs.
    ALTER TABLE accounts ADD COLUMN password_hash TEXT;
    ALTER TABLE accounts ADD COLUMN operator INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE api_keys (
        id INTEGER PRIMARY KEY,
        account_id INTEGER NOT NULL REFERENCES accounts(id),
        key_hash TEXT NOT NULL UNIQUE,
        label TEXT NOT NULL,
        created REAL NOT NULL,
        revoked REAL
    );
    CREATE INDEX api_keys_account ON api_keys(account_id);
    -- Only the sha256 of a browser's session id is kept, as for every other secret.
    CREATE TABLE web_sessions (
        id_hash TEXT PRIMARY KEY,
        account_id INTEGER NOT NULL REFERENCES accounts(id),
        created REAL NOT NULL,
        expires REAL NOT NULL
    );
    CREATE INDEX web_sessions_account ON web_sessions(account_id);
    -- "nice,memory MB,CPU seconds" of an order made on the pages: its secret is derived
    -- (market.keys), so its file can be made again for its owner.
    ALTER TABLE orders ADD COLUMN web_terms TEXT;
    CREATE TABLE batches (
        id INTEGER PRIMARY KEY,
        account_id INTEGER NOT NULL REFERENCES accounts(id),
        label TEXT NOT NULL,
        program TEXT NOT NULL,
        created REAL NOT NULL
    );
    CREATE INDEX batches_account ON batches(account_id, id);
    ALTER TABLE jobs ADD COLUMN batch_id INTEGER REFERENCES batches(id);
    CREATE INDEX jobs_batch ON jobs(batch_id, id);
    -- The name of the file a job's input came from, for the results archive's names.
    ALTER TABLE jobs ADD COLUMN input_name TEXT;
    """,
    """
    -- Indexes no query needs, updated by every lease and every payment: jobs' leases are
    -- found through leases_network (job_id first), a host's active leases through
    -- leases_seat (host_id first, the same condition), and no query asks a transfer's source.
    DROP INDEX leases_job;
    DROP INDEX leases_host;
    DROP INDEX transfers_source;
    -- The ready jobs without `state` in the index's condition: a job's slots are 0 once it
    -- is not open (market.integrity checks it), and the UPDATE that ends a job, which
    -- changes its state, then changes no indexed column (PostgreSQL can keep the new row
    -- version on its page and leave the indexes alone: a HOT update).
    DROP INDEX jobs_ready;
    CREATE INDEX jobs_ready ON jobs(id) WHERE slots > 0;
    """,
    """
    -- Index entries no query looks up, written by every result and every lease: a book's
    -- transfers are looked up by target only for payments (what an account earned: the
    -- refund each job's result also writes needs none), and jobs by batch only for a
    -- batch's own (jobs submitted through the API have none).
    DROP INDEX transfers_target;
    CREATE INDEX transfers_target ON transfers(target) WHERE kind = 'pay';
    DROP INDEX jobs_batch;
    CREATE INDEX jobs_batch ON jobs(batch_id, id) WHERE batch_id IS NOT NULL;
    """,
)

# Statements PostgreSQL runs after the step of the same index in MIGRATIONS (SQLite has
# no DROP CONSTRAINT; its checks cost it a lookup in its own process, not a query each).
POSTGRES_ONLY: dict[int, str] = {
    5: """
    -- A lease and its result insert three rows whose references PostgreSQL checked with a
    -- query and a row lock each (nine a round trip, a tenth of the server's work), and
    -- whose states it checked on every update. Those rows are written only by the market's
    -- own statements, from rows just read, and no row they name is ever deleted;
    -- market.integrity checks what these constraints guarded (admin check-ledger, tests).
    ALTER TABLE leases DROP CONSTRAINT leases_job_id_fkey, DROP CONSTRAINT leases_order_id_fkey,
        DROP CONSTRAINT leases_host_id_fkey, DROP CONSTRAINT leases_state_check;
    ALTER TABLE results DROP CONSTRAINT results_lease_id_fkey,
        DROP CONSTRAINT results_job_id_fkey, DROP CONSTRAINT results_order_id_fkey,
        DROP CONSTRAINT results_host_id_fkey, DROP CONSTRAINT results_verdict_check;
    ALTER TABLE transfers DROP CONSTRAINT transfers_result_id_fkey,
        DROP CONSTRAINT transfers_kind_check;
    ALTER TABLE jobs DROP CONSTRAINT jobs_state_check;
    -- Room on each page for the updated versions of its jobs (each is updated twice).
    ALTER TABLE jobs SET (fillfactor = 80);
    """,
    6: """
    -- A result is paid at most once: unique among the transfers that name one (a refund,
    -- a reservation or a grant names none, and wrote an entry of NULL). SQLite keeps its
    -- table's UNIQUE (its index cannot be dropped apart from the table).
    ALTER TABLE transfers DROP CONSTRAINT transfers_result_id_key;
    CREATE UNIQUE INDEX transfers_result ON transfers(result_id) WHERE result_id IS NOT NULL;
    """,
}

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


# SQLite's type names and what PostgreSQL calls them; ids are 64-bit on PostgreSQL as
# SQLite's INTEGER PRIMARY KEY (its rowid) is.
_PG_TYPES = (
    (r"\bINTEGER PRIMARY KEY\b", "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"),
    (r"\bINTEGER\b", "BIGINT"),
    (r"\bREAL\b", "DOUBLE PRECISION"),
    (r"\bBLOB\b", "BYTEA"),
    (r"\)\s*WITHOUT ROWID", ")"),
)

# pg_advisory_lock key: instances starting together migrate one after the other.
_MIGRATION_LOCK = 0x6D61726B6574


def pg_ddl(statement: str) -> str:
    """A migration statement as PostgreSQL spells it."""
    for pattern, replacement in _PG_TYPES:
        statement = re.sub(pattern, replacement, statement)
    return statement


def migrate_postgres(conn: Connection) -> int:
    """migrate() for PostgreSQL: the same steps, one transaction each, under a lock that
    keeps several instances starting at once from running a step twice."""
    conn.execute("SELECT pg_advisory_lock(?)", (_MIGRATION_LOCK,))
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
        old = int(row[0] or 0)
        if old > SCHEMA_VERSION:
            raise SchemaTooNew(
                f"the database has schema version {old}, this market knows up to "
                f"{SCHEMA_VERSION}: run a newer market"
            )
        for version in range(old, SCHEMA_VERSION):
            conn.execute("BEGIN")
            try:
                script = MIGRATIONS[version] + POSTGRES_ONLY.get(version, "")
                for statement in _statements(script):
                    conn.execute(pg_ddl(statement))
                conn.execute("DELETE FROM schema_version")
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version + 1,))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return old
    finally:
        conn.execute("SELECT pg_advisory_unlock(?)", (_MIGRATION_LOCK,))


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
