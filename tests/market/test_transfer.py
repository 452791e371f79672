"""`livecd market export|import`: a market moved from SQLite to PostgreSQL and back keeps
every row and balance, serves on from where it was, and a bad target or file is refused."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from livecd.cli import main
from livecd.market_process import Host, MarketProcess, source_session
from market.buyer import BuyerClient
from market.dialect import Location
from market.store import connect
from market.transfer import TABLES

RESULT = {"outcome": "ok", "exit_status": 0, "output": "", "cpu_seconds": 1, "wall_seconds": 1}


def _lease_and_post(market: MarketProcess, host: Host, seat: int = 0) -> int:
    """One lease and its result through the API; the lease's number."""
    session = source_session(host.source)
    lease = session.post(
        f"{market.url}/v1/lease", json={"wait": 0, "seat": seat}, auth=host.auth, timeout=10
    )
    assert lease.status_code == 200, lease.text
    number = int(lease.json()["lease"])
    posted = session.post(
        f"{market.url}/v1/leases/{number}/result", json=RESULT, auth=host.auth, timeout=10
    )
    assert posted.status_code == 200, posted.text
    return number


def _dump(db: Location) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table, in an order that does not depend on the engine."""
    conn = connect(db)
    try:
        return {
            table: sorted(
                (
                    tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)
                    for row in conn.execute(f"SELECT * FROM {table}")
                ),
                key=repr,
            )
            for table, _ in TABLES
        }
    finally:
        conn.close()


def _invoke(*args: str) -> str:
    done = CliRunner().invoke(main, ["market", *args])
    assert done.exit_code == 0, done.output
    return done.output


def _populated(work: Path, fsdither: bytes) -> tuple[Path, str, Host, list[int]]:
    """A SQLite market with a bit of everything: accounts, a leaderboard setting, orders
    (one a volunteer made, with the market's signing key), hosts (one revoked), a program,
    finished, open and cancelled jobs, paid results."""
    with MarketProcess(work, lease_seconds=60) as market:
        market.start()
        api_key = market.account("lab", coins=10_000).api_key
        buyer = BuyerClient(market.url, api_key)
        market.account("other", coins=5)
        _invoke("account", "leaderboard", "lab", "--db", str(market.db))
        buyer.create_order(nice=10)
        host = market.enroll(market.order("lab", work / "lab.cpu"), seats=2, source="127.0.0.2")
        gone = market.enroll(market.order("other", work / "other.cpu"), source="127.0.0.3")
        _invoke("host", "revoke", gone.id, "--db", str(market.db))
        program = buyer.upload_program(fsdither)
        jobs = buyer.submit(program, [b"in%d" % i for i in range(6)], replicas=1)
        for _ in range(3):
            _lease_and_post(market, host)
        buyer.cancel(jobs[-1])
        market.stop()
        return Path(market.db), api_key, host, jobs


@pytest.mark.parametrize("market_backend", ["postgres"])
def test_a_market_moved_to_postgres_and_back_keeps_every_row_and_serves_on(
    market_location: Location, fsdither: bytes, tmp_path: Path
) -> None:
    source, api_key, host, jobs = _populated(tmp_path / "a", fsdither)
    there, back = tmp_path / "there.jsonl", tmp_path / "back.jsonl"
    _invoke("export", "--db", str(source), "-o", str(there))
    lines = there.read_text().splitlines()
    assert json.loads(lines[-1])["end"]["results"] == 3
    # One row a line, the program's bytes as base64.
    assert sum(base64.b64encode(fsdither).decode() in line for line in lines) == 1
    imported = _invoke("import", "--db", str(market_location), str(there))
    assert "3 results" in imported and "the ledger adds up" in imported

    _invoke("export", "--db", str(market_location), "-o", str(back))
    home = tmp_path / "home.db"
    _invoke("import", "--db", str(home), str(back))
    original = _dump(source)
    assert _dump(home) == original
    assert sum(len(rows) for rows in original.values()) > 30
    # The balances went along (the rows above include accounts.millicoins).
    ledger_check = _invoke("ledger-check", "--db", str(market_location))
    assert "the books add up" in ledger_check

    # The PostgreSQL market serves on: the same host, the next job, new ids after the old.
    with MarketProcess(tmp_path / "pg", db=market_location) as market:
        market.start()
        lease = _lease_and_post(market, host)
        assert lease > max(row[0] for row in original["leases"])
        on_pg = BuyerClient(market.url, api_key)
        assert on_pg.job(jobs[0])["state"] == "done"
        assert on_pg.job(jobs[3])["state"] == "done"


def test_a_target_that_holds_a_market_and_a_cut_off_file_are_refused(
    market_location: Location, tmp_path: Path
) -> None:
    with MarketProcess(tmp_path / "a") as market:
        market.start()
        market.account("lab", coins=10)
    exported = tmp_path / "m.jsonl"
    _invoke("export", "--db", str(market.db), "-o", str(exported))
    _invoke("migrate", "--db", str(market_location))
    _invoke("account", "new", "someone", "--db", str(market_location))

    refused = CliRunner().invoke(
        main, ["market", "import", "--db", str(market_location), str(exported)]
    )
    assert refused.exit_code == 2
    assert refused.output == (
        "livecd: error: the target database already holds a market (rows in accounts): "
        "import into a new, empty database\n"
    )

    cut = tmp_path / "cut.jsonl"
    cut.write_text("".join(exported.read_text().splitlines(keepends=True)[:-1]))
    fresh = tmp_path / "fresh.db"
    cut_off = CliRunner().invoke(main, ["market", "import", "--db", str(fresh), str(cut)])
    assert cut_off.exit_code == 2 and "cut off" in cut_off.output, cut_off.output
    # Nothing half-written: the database the import would have created is not there.
    assert not fresh.exists()


def test_an_export_is_private_and_a_missing_database_is_not_exported(tmp_path: Path) -> None:
    with MarketProcess(tmp_path / "a") as market:
        market.start()
    _invoke("export", "--db", str(market.db), "-o", str(tmp_path / "m.jsonl"))
    assert (tmp_path / "m.jsonl").stat().st_mode & 0o077 == 0
    missing = CliRunner().invoke(
        main, ["market", "export", "--db", str(tmp_path / "nope.db"), "-o", str(tmp_path / "n")]
    )
    assert missing.exit_code == 2 and "no market database" in missing.output
    assert not (tmp_path / "nope.db").exists() and not (tmp_path / "n").exists()
