"""Running the market: uvicorn (uvloop + httptools), TLS unless bound to loopback."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from cpushare.order import is_loopback_host
from market import accounts
from market.app import MarketConfig, create_app
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
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
                options.cert, options.key
            )
        except (OSError, ValueError, ssl.SSLError) as exc:
            raise ServeError(
                f"cannot use --cert {options.cert} / --key {options.key}: {exc}"
            ) from None
    public_url = (options.public_url or default_public_url(options)).rstrip("/")

    def settle(conn: Connection) -> None:
        accounts.set_setting(conn, "public_url", public_url)
        accounts.set_setting(conn, "cert_sha256", pin)

    transact(options.db, settle)
    return public_url


def serve(options: ServeOptions) -> None:
    """Serve until SIGINT or SIGTERM; queued writes are committed before exiting."""
    config = MarketConfig(db=options.db, lease_seconds=options.lease_seconds)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(config),
            host=options.host,
            port=options.port,
            loop="uvloop",
            http="httptools",
            ssl_certfile=options.cert,
            ssl_keyfile=options.key,
            access_log=False,
            # The peer's own address counts agreement (market.hosts): no client, a QEMU
            # guest arriving from 127.0.0.1 included, may name another with a header.
            proxy_headers=False,
            log_level="warning",
            timeout_keep_alive=75,
            # Long polls would hold a graceful stop for up to a minute otherwise.
            timeout_graceful_shutdown=3,
        )
    )
    server.run()
