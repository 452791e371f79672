"""Who may read what: a program's bytes are the buyer's (its code may be its secret), so
only its owner and a seller that must run it may download it.

One function per decision: the rule changes in one place.
"""

from __future__ import annotations

from market.dialect import Connection
from market.errors import NotFound


def may_read_program(
    conn: Connection, sha256: str, *, account: int | None, host: str | None
) -> bool:
    """True if the account owns the program, or the host holds an active lease on a job
    that runs it. Any other caller may not even learn that the program exists."""
    if account is not None:
        row = conn.execute(
            "SELECT 1 FROM program_owners WHERE sha256 = ? AND account_id = ?", (sha256, account)
        ).fetchone()
        return row is not None
    if host is not None:
        row = conn.execute(
            "SELECT 1 FROM leases l JOIN jobs j ON j.id = l.job_id "
            "WHERE l.state = 'active' AND l.host_id = ? AND j.program = ? LIMIT 1",
            (host, sha256),
        ).fetchone()
        return row is not None
    return False


def check_program_read(
    conn: Connection, sha256: str, *, account: int | None, host: str | None
) -> None:
    """NotFound, worded as for a missing program, unless may_read_program allows it."""
    if not may_read_program(conn, sha256, account=account, host=host):
        raise NotFound(f"no program {sha256} that these credentials may read")
