"""The stand-in market of the end-to-end sale: a real market on the host's loopback, with
TLS, whose order (for a throwaway account) names the market as the guest dials it,
`https://10.0.2.100:8443`, which a QEMU `guestfwd` rule maps to the loopback port; the
buyer's account and the jobs it queues (Floyd-Steinberg on small pictures).

Under the market's trust model a new host's result needs a second, distinct machine to
agree with it, and a guest's sellers are one host: so an honest seller can run on the
host beside the guest, from another loopback address (`validator`).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from cpushare.limits import JobLimits
from cpushare.order import SellOrder, render_order
from livecd.market_process import MarketProcess
from livecd.qemu.machine import Forward
from livecd.sdk.dither import sample_image
from livecd.toolchain import FSDITHER_SOURCE, build_job, jail_environment
from market import admin
from market.buyer import BuyerClient

GUEST_MARKET_ADDR = "10.0.2.100"
GUEST_MARKET_PORT = 8443
VOLUNTEER = "volunteer"  # the order's account: it is credited the coins
BUYER = "lab"  # the account that submits the jobs
BUYER_COINS = 1_000_000  # granted to the buyer: submitting reserves each job's worst case
VALIDATOR = "validator"  # the host-side honest seller's account
# Where the validator's connections come from: another machine, to the market.
VALIDATOR_SOURCE = "127.0.0.2"
# Small pictures: under emulation the jail's start-up, not the dithering, should dominate.
# Floyd-Steinberg runs in the jail's least memory limit, 1 MiB, on pictures up to 640x480
# (measured: scripts/bench_seller_memory.py), and these are far smaller: the jobs ask
# that, which every memory plan gives (at QEMU's default 128 MiB the plan gives 1-6 MiB:
# the less, the busier the host when the fleet plans).
JOB_MEMORY_MB = 1
JOB_LIMITS = JobLimits(
    cpu_seconds=30, wall_seconds=120, memory_bytes=JOB_MEMORY_MB << 20, output_bytes=1 << 20
)
# A lease outlives a seller killed mid-job by this much, then the job is leased again.
LEASE_SECONDS = 15.0


def job_inputs(count: int) -> list[bytes]:
    """`count` reproducible PGM pictures of slightly different sizes."""
    return [sample_image(64 + 8 * (i % 5), 48 + 4 * (i % 3), seed=i) for i in range(count)]


def build_fsdither(workdir: Path) -> bytes:
    """The Floyd-Steinberg job, built with the SDK."""
    return build_job([FSDITHER_SOURCE], workdir / "fsdither.job").read_bytes()


def guest_market(workdir: Path, *, lease_seconds: float = LEASE_SECONDS) -> MarketProcess:
    """A market (not started yet) whose certificate also names the address the guest
    dials; the same port, database and certificate across stops and starts."""
    return MarketProcess(workdir, lease_seconds=lease_seconds, cert_names=[GUEST_MARKET_ADDR])


@dataclass(frozen=True)
class SaleMarket:
    """A running `guest_market` with a volunteer's order and a buyer's account."""

    process: MarketProcess
    order: SellOrder
    buyer: BuyerClient

    @classmethod
    def open(cls, process: MarketProcess) -> SaleMarket:
        """The accounts and the order on `process`, which runs."""
        process.account(VOLUNTEER)
        url = f"https://{GUEST_MARKET_ADDR}:{GUEST_MARKET_PORT}"
        order = process.order(VOLUNTEER, public_url=url)
        buyer = process.client(BUYER)
        process.grant(BUYER, BUYER_COINS)
        return cls(process, order, buyer)

    @property
    def forward(self) -> Forward:
        """The guest's way to the market."""
        return Forward(GUEST_MARKET_ADDR, GUEST_MARKET_PORT, self.process.port)

    def order_file(self) -> bytes:
        """The volunteer's `.cpu` file."""
        return render_order(self.order).encode()

    def submit(
        self,
        program: bytes,
        inputs: Sequence[bytes],
        *,
        replicas: int | None = None,
        limits: JobLimits = JOB_LIMITS,
    ) -> list[int]:
        """Queue one job per input (adaptive replication unless `replicas`); their ids."""
        sha256 = self.buyer.upload_program(program)
        return self.buyer.submit(sha256, inputs, replicas=replicas, limits=limits.as_dict())

    def done(self) -> dict[int, dict[str, object]]:
        """The buyer's finished jobs with an accepted result, by id."""
        return {int(str(job["id"])): job for job in self.buyer.jobs("done")}

    def coins(self) -> dict[str, float]:
        """Every account's balance, as the market's operator sees it."""
        return {
            str(a["name"]): float(str(a["coins"])) for a in admin.list_accounts(self.process.db)
        }

    @contextlib.contextmanager
    def validator(self, workdir: Path) -> Iterator[None]:
        """An honest seller on the host, from VALIDATOR_SOURCE: a second machine whose
        results the guest's agree with (its console in workdir/validator.console)."""
        if VALIDATOR not in self.coins():
            self.process.account(VALIDATOR)
        order = workdir / "validator.cpu"
        self.process.order(VALIDATOR, order)
        env = {**jail_environment(), **os.environ, "CPUSHARE_SOURCE_ADDRESS": VALIDATOR_SOURCE}
        argv = [sys.executable, "-m", "cpushare.seller", str(order), "--wait", "5"]
        with open(workdir / "validator.console", "wb") as console:
            seller = subprocess.Popen(argv, stdout=console, stderr=subprocess.STDOUT, env=env)
        try:
            yield
        finally:
            seller.terminate()
            try:
                seller.wait(10)
            except subprocess.TimeoutExpired:
                seller.kill()
                seller.wait()
