"""Faults of a market on PostgreSQL: an instance killed (SIGKILL) in the middle of a run
loses nothing it acknowledged and pays nothing twice, and the leases taken through it come
back at their deadline; a full disk is the same 507 as on SQLite."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
import requests

from livecd.market_process import Host, MarketProcess, source_session
from market import ledger
from market.buyer import BuyerClient
from market.dialect import Location
from market.store import connect

RESULT = {"outcome": "ok", "exit_status": 0, "output": "", "cpu_seconds": 1, "wall_seconds": 1}
LEASE_SECONDS = 2
SELLERS = 4
JOBS = 240


@dataclass
class Seller:
    """A simulated seller that leases and posts through its home instance, and goes to
    the other instance when its home stops answering (as a fleet behind a proxy would)."""

    host: Host
    instances: list[MarketProcess]
    acked: list[int] = field(default_factory=list)
    statuses: set[int] = field(default_factory=set)

    def _post(self, path: str, body: object) -> requests.Response:
        session = source_session(self.host.source)
        while True:
            try:
                return session.post(
                    f"{self.instances[0].url}{path}", json=body, auth=self.host.auth, timeout=10
                )
            except requests.ConnectionError:
                # The instance is gone: the same request, idempotent, to the next one.
                if len(self.instances) == 1:
                    raise
                self.instances.pop(0)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            lease = self._post("/v1/lease", {"wait": 1})
            self.statuses.add(lease.status_code)
            if lease.status_code != 200:
                continue
            number = lease.json()["lease"]
            posted = self._post(f"/v1/leases/{number}/result", RESULT)
            self.statuses.add(posted.status_code)
            if posted.status_code == 200:
                self.acked.append(number)


@pytest.fixture
def two_instances(tmp_path: Path, market_location: Location) -> Iterator[list[MarketProcess]]:
    instances = [
        MarketProcess(tmp_path / name, db=market_location, lease_seconds=LEASE_SECONDS)
        for name in "ab"
    ]
    try:
        yield [instance.start() for instance in instances]
    finally:
        for instance in instances:
            instance.stop(kill=True)


def _done(db: Location) -> int:
    conn = connect(db)
    try:
        return int(conn.execute("SELECT count(*) FROM jobs WHERE state = 'done'").fetchone()[0])
    finally:
        conn.close()


@pytest.mark.parametrize("market_backend", ["postgres"])
def test_an_instance_killed_mid_run_loses_no_acknowledged_result_and_pays_nothing_twice(
    two_instances: list[MarketProcess], fsdither: bytes, tmp_path: Path
) -> None:
    a, b = two_instances
    buyer = BuyerClient(a.url, a.account("lab", coins=1_000_000).api_key)
    program = buyer.upload_program(fsdither)
    held_job = buyer.submit(program, [b"held"], replicas=1)[0]
    buyer.submit(program, [b"in%d" % i for i in range(JOBS - 1)], replicas=1)

    # A seller that leases through A and is never heard of again.
    holder = a.enroll(a.order("lab"), source="127.0.0.9")
    held = source_session(holder.source).post(
        f"{a.url}/v1/lease", json={"wait": 0}, auth=holder.auth, timeout=10
    )
    assert held.json()["job"] == held_job
    held_lease = held.json()["lease"]

    sellers = [
        Seller(a.enroll(a.order("lab"), source=f"127.0.0.{10 + i}"), [a, b] if i % 2 else [b, a])
        for i in range(SELLERS)
    ]
    stop = threading.Event()
    threads = [threading.Thread(target=s.run, args=(stop,)) for s in sellers]
    for thread in threads:
        thread.start()
    try:
        give_up = time.monotonic() + 30
        while _done(b.db) < JOBS // 4 and time.monotonic() < give_up:
            time.sleep(0.05)
        a.stop(kill=True)  # in the middle of the run: sellers' requests are in flight
        give_up = time.monotonic() + 120
        while _done(b.db) < JOBS and time.monotonic() < give_up:
            time.sleep(0.1)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    statuses = set().union(*(s.statuses for s in sellers))
    assert _done(b.db) == JOBS, (_done(b.db), statuses)
    assert 500 not in statuses, statuses
    # The sellers of A were cut off in the middle of the run and went on through B.
    assert all(s.instances == [b] for s in sellers[1::2])

    conn = connect(b.db)
    try:
        acked = [n for s in sellers for n in s.acked]
        assert len(acked) == len(set(acked)) >= JOBS - 1, (len(acked), len(set(acked)))
        stored = dict(conn.execute("SELECT lease_id, count(*) FROM results GROUP BY lease_id"))
        assert [n for n in acked if stored.get(n) != 1] == []
        assert ledger.check(conn) == []
        paid = conn.execute(
            "SELECT r.job_id, count(*) FROM transfers t JOIN results r ON r.id = t.result_id "
            "WHERE t.kind = 'pay' GROUP BY r.job_id"
        ).fetchall()
        assert len(paid) == JOBS and {count for _, count in paid} == {1}
        # The lease held through the killed instance expired at its deadline (it was not
        # handed back), and its job went to another seller after that, not before.
        state, released, deadline = conn.execute(
            "SELECT state, released, deadline FROM leases WHERE id = ?", (held_lease,)
        ).fetchone()
        assert (state, released) == ("expired", None)
        finished_by = conn.execute(
            "SELECT l.host_id, l.created FROM results r JOIN leases l ON l.id = r.lease_id "
            "WHERE r.job_id = ?",
            (held_job,),
        ).fetchall()
        assert len(finished_by) == 1 and finished_by[0][0] != holder.id
        assert finished_by[0][1] >= deadline
    finally:
        conn.close()


@pytest.fixture
def programs_on_a_small_disk(market_location: Location) -> Iterator[Location]:
    """The market database with its programs table (and the TOAST table holding their
    bytes) in a tablespace on a 1 MiB tmpfs: a disk that fills up without touching any
    other database of the server (PostgreSQL writes its WAL elsewhere and reserves a
    table's space when it extends it, so a full tablespace fails only the write)."""
    assert isinstance(market_location, str)
    root = Path(tempfile.mkdtemp(prefix="market-full-"))
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(root)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        root.rmdir()
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    space = f"market_full_{uuid.uuid4().hex[:12]}"
    try:
        # The server's user must own a tablespace's directory.
        shutil.chown(root, "postgres", "postgres")
        with psycopg.connect(market_location, autocommit=True) as conn:
            conn.execute(f"CREATE TABLESPACE {space} LOCATION '{root}'")
            try:
                conn.execute(f"ALTER TABLE programs SET TABLESPACE {space}")
                yield market_location
                conn.execute("ALTER TABLE programs SET TABLESPACE pg_default")
            finally:
                conn.execute(f"DROP TABLESPACE {space}")
    finally:
        subprocess.run(["umount", str(root)], check=True)
        root.rmdir()


@pytest.mark.parametrize("market_backend", ["postgres"])
def test_a_full_disk_on_postgres_is_507_and_keeps_nothing_of_the_request(
    programs_on_a_small_disk: Location, fsdither: bytes, tmp_path: Path
) -> None:
    with MarketProcess(tmp_path, db=programs_on_a_small_disk) as market:
        market.start()
        buyer = BuyerClient(market.url, market.account("lab", coins=1000).api_key)
        # A valid program, larger than the disk its bytes go to.
        large = fsdither + os.urandom(2 << 20)
        reply = buyer.session.put(
            f"{market.url}/v1/programs",
            data=large,
            headers={"Content-Type": "application/octet-stream"},
            timeout=60,
        )
        assert reply.status_code == 507, reply.text
        assert "disk is full" in reply.text and "nothing of this request was kept" in reply.text
        # The market serves on: what needs no room on the full disk still works.
        assert buyer.status()["jobs"]["open"] == 0
        assert market.account("other").name == "other"
    conn = connect(programs_on_a_small_disk)
    try:
        assert conn.execute("SELECT count(*) FROM programs").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM program_owners").fetchone()[0] == 0
    finally:
        conn.close()
