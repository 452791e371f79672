"""Attack: a cheating seller. The REAL seller, run with a tampered jail loader that does not
run dithering jobs on big pictures and posts garbage instead, leases jobs beside honest
sellers on other source addresses (other machines, to the market). Its garbage is never
accepted, the buyer downloads only right results, it earns nothing for garbage, and it
loses the trust its honest results had earned. And: a revoked host's seller says so in
one console line and stops for good."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from polling import until

from cpushare.console import parse_line
from livecd.market_process import MarketProcess
from livecd.sdk.dither import dither, sample_image
from livecd.toolchain import LOADER_SOURCE, loader_command
from market import admin, trust
from market.buyer import BuyerClient

# The tampered loader cheats just before the lock: a job whose input is a PGM at least
# 100 pixels wide ("P5\nNNN") is never run; the loader writes garbage as its output and
# exits 0, as a finished job would. Anything else (the self-test, small pictures) runs
# honestly, so the cheater passes the jail check and earns trust first. It peeks at the
# input where the job would start reading (fd 0 may be the control stream's file, the
# input after the control).
TAMPER_AT = "\t/* Lock, step 1:"
CHEAT = r"""	{
		char h[6] = { 0 };
		long at = syscall3(8 /* lseek */, 0, 0, 1 /* SEEK_CUR */);
		long n = at < 0 ? at : syscall6(17 /* pread64 */, 0, (long)h, 6, at, 0, 0);
		int wide = n == 6 && h[0] == 'P' && h[1] == '5' && h[2] == '\n' &&
			h[3] >= '1' && h[3] <= '9' && h[4] >= '0' && h[4] <= '9' &&
			h[5] >= '0' && h[5] <= '9';
		if (wide) {
			static const char junk[] = "garbage instead of a dithered picture\n";
			syscall3(NR_write, 1, (long)junk, sizeof junk - 1);
			syscall3(NR_exit_group, 0, 0, 0);
		}
	}
"""
HONEST = ("127.0.0.2", "127.0.0.3")
CHEATER = "127.0.0.4"


@pytest.fixture(scope="module")
def tampered_loader(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A modified copy of the real loader.c, built as the real one is."""
    text = LOADER_SOURCE.read_text()
    assert text.count(TAMPER_AT) == 1, "the loader changed: find a new place to tamper"
    workdir = tmp_path_factory.mktemp("cheat")
    source = workdir / "loader.c"
    source.write_text(text.replace(TAMPER_AT, CHEAT + TAMPER_AT))
    out = workdir / "jail-loader"
    command = loader_command(out)
    assert command[-1] == str(LOADER_SOURCE)
    subprocess.run([*command[:-1], str(source)], check=True, capture_output=True)
    return out


class Seller:
    """The real `python3 -m cpushare.seller ORDER` from loopback address `source`."""

    def __init__(self, order: Path, source: str, *extra: str) -> None:
        self.console = order.with_suffix(".console")
        argv = [sys.executable, "-m", "cpushare.seller", str(order), "--wait", "1"]
        argv += ["--backoff-max", "0.4", "--status-dir", str(order.parent / "status"), *extra]
        env = {**os.environ, "CPUSHARE_SOURCE_ADDRESS": source}
        with open(self.console, "wb") as out:
            self.process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)

    def events(self, name: str, **fields: str) -> list[dict[str, str]]:
        found = [parse_line(line) for line in self.console.read_text().splitlines()]
        return [
            f
            for f in found
            if f is not None
            and f["event"] == name
            and all(f.get(k) == v for k, v in fields.items())
        ]

    def wait_for(self, name: str, timeout: float = 60, **fields: str) -> dict[str, str]:
        found = until(
            lambda: self.events(name, **fields),
            f"a {name} event",
            timeout,
            0.05,
            self.console.read_text,
        )
        return found[0]


@pytest.fixture
def started() -> Iterator[list[Seller]]:
    sellers: list[Seller] = []
    yield sellers
    for seller in sellers:
        if seller.process.poll() is None:
            seller.process.kill()
        seller.process.wait(timeout=20)


def _wait_accepted(buyer: BuyerClient, jobs: list[int], timeout: float = 240) -> None:
    until(
        lambda: all(buyer.job(job)["state"] == "done" for job in jobs),
        "every job done",
        timeout,
        0.2,
        lambda: [buyer.job(job) for job in jobs],
    )


def _trust(db: Path, host: str) -> int:
    """The host's consecutive valid results (its trust, per program: one program here)."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT valid FROM trust WHERE host_id = ?", (host,)).fetchall()
    return max((n for (n,) in rows), default=0)


def _judged_within(db: Path, host: str, first_job: int, seconds: float) -> bool:
    """Whether a result of `host` for a job from `first_job` on has a verdict, within
    `seconds`."""
    give_up = time.monotonic() + seconds
    while True:
        with sqlite3.connect(db) as conn:
            (judged,) = conn.execute(
                "SELECT count(*) FROM results WHERE host_id = ? AND job_id >= ?"
                " AND verdict != 'pending'",
                (host, first_job),
            ).fetchone()
        if judged or time.monotonic() >= give_up:
            return judged > 0
        time.sleep(0.2)


def _coins(market: MarketProcess, name: str) -> float:
    return next(float(str(a["coins"])) for a in admin.list_accounts(market.db) if a["name"] == name)


def test_a_cheating_seller_with_a_tampered_loader_never_gets_garbage_accepted(
    tmp_path: Path, fsdither: bytes, tampered_loader: Path, started: list[Seller]
) -> None:
    market = MarketProcess(tmp_path, lease_seconds=10).start()
    try:
        buyer = BuyerClient(market.url, market.account("lab", coins=100_000).api_key)
        market.account("cheat")
        market.order("cheat", tmp_path / "cheat.cpu")
        started.append(Seller(tmp_path / "cheat.cpu", CHEATER, "--loader", str(tampered_loader)))
        for i, source in enumerate(HONEST):
            market.account(f"honest{i}")
            market.order(f"honest{i}", tmp_path / f"honest{i}.cpu")
            started.append(Seller(tmp_path / f"honest{i}.cpu", source))
        cheater = started[0]
        host = cheater.wait_for("enrolled")["host"]
        program = buyer.upload_program(fsdither)

        # Small pictures: the cheater runs them honestly and earns some trust for the
        # program, but fewer than the TRUSTED results that would let its word stand alone
        # (a trusted host's lone result is the residual risk docs/trust.md documents; what
        # must hold is that an untrusted host's garbage is never accepted).
        small = [sample_image(20 + i, 16, seed=i) for i in range(trust.TRUSTED - 4)]
        jobs = buyer.submit(program, small)
        _wait_accepted(buyer, jobs)
        honest_finished = len(cheater.events("job-finished"))
        assert honest_finished > 0, "the cheater leased nothing: the attack was not tried"
        earned = _trust(market.db, host)
        assert 0 < earned < trust.TRUSTED

        # Big pictures: it posts garbage, and the market must notice. The honest sellers
        # race it for them: batches are submitted until some of its garbage was judged
        # (the attack tried). Its results are posted after its job-finished lines, and
        # one that comes after two honest ones agreed finds its lease gone, unjudged.
        big: list[bytes] = []
        big_jobs: list[int] = []
        for _ in range(8):
            more = [sample_image(100 + len(big) + i, 20, seed=len(big) + i) for i in range(8)]
            big_jobs += buyer.submit(program, more)
            big += more
            _wait_accepted(buyer, big_jobs)
            if _judged_within(market.db, host, min(big_jobs), seconds=5):
                break
        assert len(cheater.events("job-finished")) > honest_finished, "no garbage was made"
        assert _judged_within(market.db, host, min(big_jobs), seconds=0), "none was judged"
        for job, image in zip(jobs + big_jobs, small + big, strict=True):
            assert buyer.output(job) == dither(image)
        assert _trust(market.db, host) == 0 < earned
        # Paid for its honest results only: nothing for any big picture.
        with sqlite3.connect(market.db) as conn:
            garbage = conn.execute(
                "SELECT r.verdict, count(*) FROM results r JOIN jobs j ON j.id = r.job_id"
                " WHERE r.host_id = ? AND r.job_id >= ? GROUP BY r.verdict",
                (host, min(big_jobs)),
            ).fetchall()
            paid_garbage = conn.execute(
                "SELECT count(*) FROM transfers t JOIN results r ON r.id = t.result_id"
                " WHERE r.host_id = ? AND r.job_id >= ?",
                (host, min(big_jobs)),
            ).fetchone()[0]
        assert garbage and {verdict for verdict, _ in garbage} == {"rejected"}, garbage
        assert paid_garbage == 0
        assert _coins(market, "cheat") > 0  # the small pictures, honestly run
        assert admin.check_ledger(market.db) == []
        assert all(s.process.poll() is None for s in started)
    finally:
        market.stop(kill=True)


def test_a_revoked_hosts_seller_says_so_once_and_stops_asking(
    tmp_path: Path, started: list[Seller]
) -> None:
    market = MarketProcess(tmp_path, lease_seconds=10).start()
    try:
        key = market.account("volunteer").api_key
        market.order("volunteer", tmp_path / "volunteer.cpu")
        seller = Seller(tmp_path / "volunteer.cpu", "127.0.0.2")
        started.append(seller)
        host = seller.wait_for("enrolled")["host"]
        seller.wait_for("seller-started")
        reply = requests.post(
            f"{market.url}/v1/hosts/{host}/revoke",
            headers={"Authorization": f"Bearer {key}"},
            timeout=10,
        )
        assert reply.status_code == 200, reply.text
        assert seller.process.wait(timeout=30) == 3
        lines = [e for e in seller.events("error") if e["what"] == "revoked"]
        assert len(lines) == 1 and "revoked" in lines[0]["detail"]
        status = (tmp_path / "status" / "volunteer.json").read_text()
        assert '"state": "revoked"' in status
        assert "Traceback" not in seller.console.read_text()
    finally:
        market.stop(kill=True)
