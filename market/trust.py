"""Adaptive replication (BOINC's rule): a host earns trust per program by consecutive valid
results, and loses it all on the first disagreement.

A result is valid when a distinct host on a distinct network agreed with it; a result that
stood alone proves nothing and counts neither way. Below TRUSTED valid results a host's
result always waits for a second host; from TRUSTED on it stands alone with probability
1 - 1/n, and is replicated anyway otherwise, so a trusted host that turns bad is caught
within about n of its results.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from market.dialect import Connection

TRUSTED = 10


def valid_results(conn: Connection, host_id: str, program: str) -> int:
    """The host's consecutive valid results for the program."""
    row = conn.execute(
        "SELECT valid FROM trust WHERE host_id = ? AND program = ?", (host_id, program)
    ).fetchone()
    return 0 if row is None else int(row[0])


def stands_alone(valid: int, chance: Callable[[], float]) -> bool:
    """Whether a result of a host with `valid` consecutive valid results needs no replica."""
    return valid >= TRUSTED and chance() >= 1.0 / valid


def judged(conn: Connection, program: str, valid: Iterable[str], invalid: Iterable[str]) -> None:
    """Count a valid result for each host in `valid`; reset each host in `invalid`."""
    conn.executemany(
        "INSERT INTO trust (host_id, program, valid) VALUES (?, ?, 1) "
        "ON CONFLICT (host_id, program) DO UPDATE SET valid = trust.valid + 1",
        [(host, program) for host in valid],
    )
    conn.executemany(
        "INSERT INTO trust (host_id, program, valid) VALUES (?, ?, 0) "
        "ON CONFLICT (host_id, program) DO UPDATE SET valid = 0",
        [(host, program) for host in invalid],
    )
