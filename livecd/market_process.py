"""A market in a child process on loopback, for the tests, the boot harness and the
benchmarks.

It runs the real `livecd market serve` command, waits until the API answers, and can be
stopped gently (SIGTERM), killed (SIGKILL) and started again on the same port and database.
Used in a `with` block it is killed at the end whatever happened.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from cpushare.order import SellOrder
from livecd.files import atomic_write
from market import admin
from market.accounts import IssuedAccount
from market.buyer import BuyerClient
from market.dialect import Location
from market.tls import self_signed


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
    """`livecd market serve` on 127.0.0.1, with its database `db` (by default a SQLite file
    in `workdir`; a postgresql:// URL for a PostgreSQL database).

    `tls` serves HTTPS with that (certificate, key); `cert_names` instead makes a fresh
    self-signed certificate for those names (and 127.0.0.1) in `workdir`, for a market
    that clients reach under another address (a guest through a QEMU forward). `livecd`
    is the base ISO of the personal CDs it serves, `public_url` what orders it issues
    through its API name it.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        db: Location | None = None,
        port: int | None = None,
        lease_seconds: float = 60.0,
        tls: tuple[Path, Path] | None = None,
        cert_names: Sequence[str] = (),
        livecd: Path | None = None,
        public_url: str | None = None,
        trusted_proxies: Sequence[str] = (),
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.db: Location = workdir / "market.db" if db is None else db
        self.port = port or free_port()
        self.lease_seconds = lease_seconds
        self.livecd = livecd
        self.trusted_proxies = tuple(trusted_proxies)
        self.public_url = public_url
        if cert_names:
            tls = (workdir / "market-cert.pem", workdir / "market-key.pem")
            cert_pem, key_pem = self_signed([*cert_names, "127.0.0.1"])
            atomic_write(tls[0], cert_pem, 0o644)
            atomic_write(tls[1], key_pem, 0o600)
        self.tls = tls
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self.log = workdir / "market.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def cert(self) -> Path | None:
        """The certificate clients must trust, if the market serves HTTPS."""
        return self.tls[0] if self.tls else None

    def start(self, timeout: float = 20.0) -> MarketProcess:
        argv = [*SERVE, "--db", str(self.db), "--listen", f"127.0.0.1:{self.port}"]
        argv += ["--lease-seconds", str(self.lease_seconds)]
        for proxy in self.trusted_proxies:
            argv += ["--trusted-proxy", proxy]
        if self.livecd:
            argv += ["--livecd", str(self.livecd)]
        if self.public_url:
            argv += ["--public-url", self.public_url]
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
                verify = str(self.cert) if self.cert else True
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

    def __enter__(self) -> MarketProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop(kill=True)

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
                verify=str(self.cert) if self.cert else True,
                timeout=10,
            )
        if reply.status_code != 201:
            raise RuntimeError(f"enrolling failed: {reply.status_code} {reply.text}")
        doc = reply.json()
        return Host(doc["host"], doc["secret"], doc["seats"], source)

    def client(self, account: str) -> BuyerClient:
        """A client of the API for a new account `account`, as a buyer uses it."""
        return BuyerClient(self.url, self.account(account).api_key, cacert=self.cert)

    def order(
        self, account: str, path: Path | None = None, *, public_url: str | None = None
    ) -> SellOrder:
        """Issue an order for `account`, addressed to the market as sellers reach it
        (`public_url`, by default the market's own), and write it to `path` if given."""
        from livecd.orders import write_order

        def deliver(order: SellOrder) -> None:
            if path is not None:
                write_order(order, path)

        return admin.new_order(self.db, account, deliver, public_url=public_url)
