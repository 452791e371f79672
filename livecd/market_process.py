"""A market in a child process on loopback, for the tests and the benchmark.

It runs the real `livecd market serve` command, waits until the API answers, and can be
stopped gently (SIGTERM), killed (SIGKILL) and started again on the same port and database.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from cpushare.order import SellOrder
from market import admin
from market.accounts import IssuedAccount


@dataclass(frozen=True)
class Host:
    """An enrolled host's credentials, and the source address it talks from."""

    id: str
    secret: str
    seats: int
    source: str

    @property
    def auth(self) -> tuple[str, str]:
        return (self.id, self.secret)


class _SourceAdapter(HTTPAdapter):
    def __init__(self, source: str) -> None:
        self._source = source
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self._source, 0)
        super().init_poolmanager(*args, **kwargs)


def source_session(source: str) -> requests.Session:
    """A requests session whose connections come from `source` (a loopback address such as
    127.0.0.2: the market sees a distinct machine)."""
    session = requests.Session()
    adapter = _SourceAdapter(source)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


SERVE = [sys.executable, "-c", "from livecd.cli import main; main()", "market", "serve"]


def free_port() -> int:
    """A TCP port nothing listens on right now on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MarketProcess:
    """`livecd market serve` on 127.0.0.1, with its database in `workdir`."""

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        lease_seconds: float = 60.0,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        self.workdir = workdir
        self.db = workdir / "market.db"
        self.port = port or free_port()
        self.lease_seconds = lease_seconds
        self.tls = tls
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self.log = workdir / "market.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> MarketProcess:
        argv = [*SERVE, "--db", str(self.db), "--listen", f"127.0.0.1:{self.port}"]
        argv += ["--lease-seconds", str(self.lease_seconds)]
        if self.tls:
            argv += ["--cert", str(self.tls[0]), "--key", str(self.tls[1])]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        assert self.process is not None
        give_up = time.monotonic() + timeout
        while time.monotonic() < give_up:
            if self.process.poll() is not None:
                raise RuntimeError(f"the market exited: {self.log.read_text()[-2000:]}")
            try:
                verify = str(self.tls[0]) if self.tls else True
                requests.get(f"{self.url}/v1/health", timeout=1, verify=verify)
                return
            except requests.RequestException:
                time.sleep(0.05)
        raise RuntimeError(f"the market did not answer within {timeout} s")

    def stop(self, *, kill: bool = False) -> None:
        """SIGTERM (queued writes are committed) or SIGKILL (as a crash would)."""
        if self.process is None:
            return
        self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        self.process.wait(timeout=20)
        self.process = None

    def account(self, name: str, coins: float = 0) -> IssuedAccount:
        """A new account, granted `coins` (a buyer needs coins to submit)."""
        issued = admin.new_account(self.db, name)
        if coins:
            admin.grant(self.db, name, coins)
        return issued

    def grant(self, name: str, coins: float) -> float:
        return admin.grant(self.db, name, coins)

    def enroll(self, order: SellOrder, *, seats: int = 1, source: str = "127.0.0.1") -> Host:
        """Enroll a host with `order` from the loopback address `source` (each address is a
        distinct machine to the market's agreement)."""
        with source_session(source) as session:
            reply = session.post(
                f"{self.url}/v1/hosts",
                json={"seats": seats},
                auth=(order.order_id, order.secret),
                timeout=10,
            )
        if reply.status_code != 201:
            raise RuntimeError(f"enrolling failed: {reply.status_code} {reply.text}")
        doc = reply.json()
        return Host(doc["host"], doc["secret"], doc["seats"], source)

    def order(self, account: str, path: Path) -> SellOrder:
        """Issue an order for `account` and write it to `path`."""
        from livecd.orders import write_order

        return admin.new_order(self.db, account, lambda order: write_order(order, path))
