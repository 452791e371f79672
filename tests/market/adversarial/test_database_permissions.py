"""Reading the market's database as another user of its host: the database and its WAL
files are created 0600 whatever the umask, and a database open to others is refused at
start with one line saying how to fix it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from livecd.cli import main
from livecd.market_process import MarketProcess


@pytest.fixture
def loose_umask() -> object:
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_database_permissions_are_private(tmp_path: Path, loose_umask: None) -> None:
    market = MarketProcess(tmp_path).start()
    try:
        market.account("lab")  # a write: the WAL and shared-memory files exist now
        files = sorted(tmp_path.glob("market.db*"))
        assert [f.name for f in files] == ["market.db", "market.db-shm", "market.db-wal"]
        modes = {f.name: stat.S_IMODE(f.stat().st_mode) for f in files}
        assert set(modes.values()) == {0o600}, modes
    finally:
        market.stop()


def test_database_permissions_open_to_others_are_refused(tmp_path: Path) -> None:
    db = tmp_path / "market.db"
    MarketProcess(tmp_path).start().stop()
    db.chmod(0o644)
    refused = CliRunner().invoke(
        main, ["market", "serve", "--db", str(db), "--listen", "127.0.0.1:1"]
    )
    assert refused.exit_code != 0
    lines = refused.output.strip().splitlines()
    assert len(lines) == 1 and f"chmod 600 {db}" in lines[0], refused.output
    assert "Traceback" not in refused.output
