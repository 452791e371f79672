"""`livecd market ...`: run the CPUShare market (`serve`, `migrate`, `openapi`, `cert`),
and load the group's other commands: the operator's (`market_admin`: `account`, `order`,
`host`, `ledger-check`, on the database directly; `market_transfer`: `export`, `import`)
and the buyer's (`market_buyer`: `submit`, `cancel`, `status`, `results`, over the HTTP
API with an account's API key). The group and what its commands share are in
`market_group`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import click

from livecd.cli.market_group import db_option, echo_json, market, user_errors
from livecd.cli.options import json_option
from livecd.errors import UserError
from livecd.files import atomic_write as write_atomically

if TYPE_CHECKING:
    from market.dialect import Location


def _redacted(url: str) -> str:
    """A database URL fit for a log: without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")).geturl()


@market.command()
@db_option
def migrate(db: Location) -> None:
    """Create the market's database or bring its schema up to this version (`serve` does
    it on start too)."""
    from market.store import open_database

    user_errors(lambda: open_database(db).close())
    click.echo("market: the database schema is up to date", err=True)


@market.command()
@db_option
@click.option("--listen", default="127.0.0.1:8080", show_default=True, help="HOST:PORT to bind.")
@click.option("--cert", type=click.Path(path_type=Path, dir_okay=False), help="TLS cert (PEM).")
@click.option("--key", type=click.Path(path_type=Path, dir_okay=False), help="TLS key (PEM).")
@click.option(
    "--public-url",
    help="The market's address as sellers see it, written into orders [default: from --listen].",
)
@click.option(
    "--lease-seconds",
    type=click.FloatRange(1, 3600),
    default=60.0,
    show_default=True,
    help="A lease expires this long after it was granted or last extended.",
)
@click.option(
    "--livecd",
    type=click.Path(path_type=Path, dir_okay=False),
    help="The live CD (an ISO built by `livecd build`) that volunteers download with their "
    "order built in (GET /v1/orders/ORDER/livecd.iso) [default: none, and that download "
    "says so].",
)
@click.option(
    "--trusted-proxy",
    "trusted_proxies",
    multiple=True,
    metavar="ADDR",
    help="A TLS-terminating proxy in front of the market (repeatable): its X-Forwarded-For "
    "and X-Forwarded-Proto are believed, so agreement still sees each seller's own network. "
    "Anyone else's headers are ignored.",
)
def serve(
    db: Location,
    listen: str,
    cert: Path | None,
    key: Path | None,
    public_url: str | None,
    lease_seconds: float,
    livecd: Path | None,
    trusted_proxies: tuple[str, ...],
) -> None:
    """Serve the market API and its web portal. Plain HTTP is allowed on loopback only;
    elsewhere give --cert and --key. The database is created and migrated on start."""
    from market.server import ServeError, ServeOptions, parse_listen, prepare
    from market.server import serve as run_server

    try:
        host, port = parse_listen(listen)
        options = ServeOptions(
            db, host, port, cert, key, public_url, lease_seconds, livecd, trusted_proxies
        )
        url = user_errors(lambda: prepare(options))
    except ServeError as exc:
        raise UserError(str(exc)) from None
    shown = _redacted(db) if isinstance(db, str) else db
    click.echo(f"market: serving {shown} on {listen}; orders point sellers at {url}", err=True)
    run_server(options)


@market.command()
def openapi() -> None:
    """Print the market's OpenAPI document, as it serves it at /v1/openapi.json."""
    from market.app import openapi_document

    echo_json(openapi_document())


@market.command()
@click.option(
    "--name",
    "names",
    multiple=True,
    default=["localhost", "127.0.0.1"],
    show_default=True,
    help="Host name or IP the certificate is for (repeatable).",
)
@click.option(
    "--cert",
    "cert_out",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="Where to write the certificate (PEM).",
)
@click.option(
    "--key",
    "key_out",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="Where to write the private key (PEM, mode 0600).",
)
@json_option
def cert(names: tuple[str, ...], cert_out: Path, key_out: Path, as_json: bool) -> None:
    """Make a self-signed certificate and key for trying the market out."""
    from market.tls import pem_sha256, self_signed

    cert_pem, key_pem = self_signed(list(names))
    try:
        write_atomically(key_out, key_pem, 0o600)
        write_atomically(cert_out, cert_pem, 0o644)
    except OSError as exc:
        raise UserError(f"cannot write the certificate: {exc}") from None
    pin = pem_sha256(cert_pem)
    if as_json:
        echo_json({"cert": str(cert_out), "key": str(key_out), "cert_sha256": pin})
    else:
        click.echo(f"wrote {cert_out} and {key_out}; orders pin cert_sha256 = {pin}")


# The operator's, the transfer and the buyer's commands register on `market` when imported.
from livecd.cli import market_admin, market_buyer, market_transfer  # noqa: E402, F401
