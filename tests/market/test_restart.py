"""A PostgreSQL restart under load: the market answers 503 while the database is away and
serves again once it is back, without being restarted itself.

The restart is of a private PostgreSQL server of the test's own (run as the postgres user,
which the server requires when the tests run as root), so no other test sees it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from livecd.market_process import MarketProcess, free_port, source_session
from market.buyer import BuyerClient
from market.store import connect

RESULT = {"outcome": "ok", "exit_status": 0, "output": "", "cpu_seconds": 1, "wall_seconds": 1}
DOWN_SECONDS = 2.0


def _bindir() -> Path:
    out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


@dataclass
class Server:
    """A PostgreSQL server in a directory of its own, listening on a Unix socket only."""

    root: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql:///postgres?host={self.root}&port={self.port}&user=postgres"

    def _pg_ctl(self, *args: str) -> None:
        command = [str(_bindir() / "pg_ctl"), "-D", str(self.root / "data"), "-w", *args]
        if os.getuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True)

    def start(self) -> None:
        options = f"-k {self.root} -p {self.port} -c listen_addresses='' -c fsync=off"
        self._pg_ctl("-o", options, "-l", str(self.root / "log"), "start")

    def stop(self) -> None:
        self._pg_ctl("-m", "fast", "stop")


@pytest.fixture
def server() -> Iterator[Server]:
    # Not under pytest's tmp_path: the postgres user must reach it.
    root = Path(tempfile.mkdtemp(prefix="market-pg-"))
    try:
        if os.getuid() == 0:
            postgres = pwd.getpwnam("postgres")
            os.chown(root, postgres.pw_uid, postgres.pw_gid)
            prefix = ["runuser", "-u", "postgres", "--"]
        else:
            prefix = []
        initdb = [str(_bindir() / "initdb"), "-D", str(root / "data"), "-U", "postgres"]
        subprocess.run(
            [*prefix, *initdb, "-A", "trust", "--no-sync"], check=True, capture_output=True
        )
        server = Server(root, free_port())
        server.start()
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(root)


def _sell(
    market: MarketProcess,
    auth: tuple[str, str],
    stop: threading.Event,
    seen: list[int],
    acked: list[int],
) -> None:
    """Lease and post results in a loop, recording every status the market answers."""
    session = source_session("127.0.0.2")
    while not stop.is_set():
        try:
            lease = session.post(f"{market.url}/v1/lease", json={"wait": 0}, auth=auth, timeout=10)
            seen.append(lease.status_code)
            if lease.status_code != 200:
                time.sleep(0.05)
                continue
            number = lease.json()["lease"]
            posted = session.post(
                f"{market.url}/v1/leases/{number}/result", json=RESULT, auth=auth, timeout=10
            )
            seen.append(posted.status_code)
            if posted.status_code == 200:
                acked.append(number)
        except requests.RequestException:
            seen.append(0)


def test_a_postgres_restart_answers_503_meanwhile_and_the_market_recovers(
    server: Server, fsdither: bytes, tmp_path: Path
) -> None:
    with MarketProcess(tmp_path, db=server.url) as market:
        market.start()
        buyer = BuyerClient(market.url, market.account("lab", coins=1_000_000).api_key)
        host = market.enroll(market.order("lab", tmp_path / "lab.cpu"), source="127.0.0.2")
        buyer.submit(buyer.upload_program(fsdither), [b"in"] * 1000, replicas=1)
        stop = threading.Event()
        seen: list[int] = []
        acked: list[int] = []
        seller = threading.Thread(target=_sell, args=(market, host.auth, stop, seen, acked))
        seller.start()
        try:
            time.sleep(1.0)
            before = len(acked)
            server.stop()
            time.sleep(DOWN_SECONDS)
            during = list(seen)
            server.start()
            give_up = time.monotonic() + 20
            while len(acked) < before + 20 and time.monotonic() < give_up:
                time.sleep(0.1)
        finally:
            stop.set()
            seller.join()
        assert before > 0
        # While the database was away: refusals the seller may retry, never a 500.
        assert 503 in during and 500 not in seen, sorted(set(seen))
        # Served again, without the market being restarted.
        assert len(acked) >= before + 20
        assert market.process is not None and market.process.poll() is None
    # Every acknowledged result is in the database.
    db = connect(server.url)
    stored = {row[0] for row in db.execute("SELECT lease_id FROM results")}
    db.close()
    assert set(acked) <= stored
