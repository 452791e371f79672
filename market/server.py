"""Running the market: uvicorn (uvloop + httptools), TLS unless bound to loopback, with
deadlines on every connection (`market.deadlines`)."""

from __future__ import annotations

import gc
import resource
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from cpushare.order import is_loopback_host
from market import accounts, personal
from market.app import MarketConfig, create_app
from market.deadlines import KEEP_ALIVE_SECONDS, GuardedHttp
from market.dialect import Connection, Location
from market.store import transact
from market.tls import pem_sha256


class ServeError(ValueError):
    """The market cannot start with these options; the message says why."""


@dataclass(frozen=True)
class ServeOptions:
    db: Location
    host: str
    port: int
    cert: Path | None = None
    key: Path | None = None
    public_url: str | None = None
    lease_seconds: float = 60.0
    livecd: Path | None = None
    # Addresses of TLS-terminating proxies whose X-Forwarded-For/-Proto are believed.
    trusted_proxies: tuple[str, ...] = ()


def parse_listen(listen: str) -> tuple[str, int]:
    """HOST:PORT (IPv6 as [ADDR]:PORT) into its parts."""
    host, colon, port = listen.rpartition(":")
    host = host.strip("[]")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ServeError(f"--listen {listen!r} must be HOST:PORT, e.g. 127.0.0.1:8080")
    return host, int(port)


def default_public_url(options: ServeOptions) -> str:
    scheme = "https" if options.cert else "http"
    host = f"[{options.host}]" if ":" in options.host else options.host
    return f"{scheme}://{host}:{options.port}"


def prepare(options: ServeOptions) -> str:
    """Check the options, migrate the database and record what orders are issued with.

    Returns the public URL. The certificate's pin and the public URL are kept in the
    database so that `livecd market order new` writes orders sellers can use.
    """
    if (options.cert is None) != (options.key is None):
        raise ServeError("give both --cert and --key, or neither (plain HTTP, loopback only)")
    if options.cert is None and not is_loopback_host(options.host):
        raise ServeError(
            f"plain HTTP is allowed on loopback only, not on {options.host}: "
            "give --cert and --key (`livecd market cert` makes a pair)"
        )
    pin = None
    if options.cert is not None and options.key is not None:
        try:
            pin = pem_sha256(options.cert.read_bytes())
            server_context(options.cert, options.key)
        except (OSError, ValueError, ssl.SSLError) as exc:
            raise ServeError(
                f"cannot use --cert {options.cert} / --key {options.key}: {exc}"
            ) from None
    if options.livecd is not None:
        personal.check_base(options.livecd)
    public_url = (options.public_url or default_public_url(options)).rstrip("/")

    def settle(conn: Connection) -> None:
        accounts.set_setting(conn, "public_url", public_url)
        accounts.set_setting(conn, "cert_sha256", pin)

    transact(options.db, settle)
    return public_url


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """The market's TLS context: TLS 1.2 or later, HTTP/1.1 only."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    context.set_alpn_protocols(["http/1.1"])
    return context


# Allocations (net of frees) between the collector's passes over young objects (Python's
# default: 700).
YOUNG_COLLECTION = 20_000


def raise_open_files_limit() -> None:
    """Lift the soft limit on open files to the hard one (each connection is one file):
    the default soft limit, often 1024, is what a flood of sockets would exhaust first."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def serve(options: ServeOptions) -> None:
    """Serve until SIGINT or SIGTERM; queued writes are committed before exiting."""
    config = MarketConfig(db=options.db, lease_seconds=options.lease_seconds, livecd=options.livecd)
    raise_open_files_limit()
    context = None
    if options.cert is not None and options.key is not None:
        context = server_context(options.cert, options.key)

    def tls(_config: uvicorn.Config, _default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        assert context is not None
        return context

    server = uvicorn.Server(
        uvicorn.Config(
            create_app(config),
            host=options.host,
            port=options.port,
            loop="market.deadlines:MarketLoop",
            http=GuardedHttp,
            ssl_context_factory=tls if context else None,
            access_log=False,
            # The peer's own address counts agreement (market.hosts): no client, a QEMU
            # guest arriving from 127.0.0.1 included, may name another with a header.
            # Only the operator's own proxies, named one by one, may pass the address on.
            proxy_headers=bool(options.trusted_proxies),
            forwarded_allow_ips=list(options.trusted_proxies) or None,
            log_level="warning",
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
            # No limit_concurrency: its 503s would fall on honest sellers as much as on
            # held sockets, which the deadlines drop instead.
            backlog=4096,
            # Long polls would hold a graceful stop for up to a minute otherwise.
            timeout_graceful_shutdown=3,
        )
    )
    # What exists now (the modules, the app) lives as long as the process: out of the
    # collector's way, its full passes walk only what requests made.
    gc.collect()
    gc.freeze()
    # Nearly everything a request makes is freed by its count of references; what a batch
    # of the writer holds at once (its rows, their values: thousands of tuples) set off a
    # young collection every 700, 3 us of CPU a job in batch leasing
    # (scripts/bench_market.py), for no garbage found.
    gc.set_threshold(YOUNG_COLLECTION, *gc.get_threshold()[1:])
    server.run()
