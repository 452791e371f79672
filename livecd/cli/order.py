"""`livecd order new|check|fetch`: write, validate and download `.cpu` sell orders."""

from __future__ import annotations

import json
from pathlib import Path

import click

from cpushare.order import SellOrder
from livecd.cli import main
from livecd.errors import UserError


@main.group()
def order() -> None:
    """Sell orders (`.cpu` files): what a seller needs to sell CPU to a market."""


@order.command("new")
@click.option("--market-url", required=True, help="The market as sellers reach it (https://...).")
@click.option("--order-id", required=True, help="The order id the market issued.")
@click.option("--secret", required=True, help="The order's secret the market issued.")
@click.option("--account", required=True, help="The account credited with CPUCoins.")
@click.option("--cert", type=click.Path(path_type=Path), help="Pin this PEM certificate.")
@click.option("--cert-sha256", help="Pin the certificate with this sha256 (hex, of the DER).")
@click.option("--ca", type=click.Path(path_type=Path), help="Trust this PEM CA certificate.")
@click.option("--nice", default=19, show_default=True, help="Nice level jobs run at.")
@click.option("--max-memory-mb", default=256, show_default=True, help="Largest job memory.")
@click.option("--max-cpu-seconds", default=60, show_default=True, help="Largest job CPU time.")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True)
def new(
    market_url: str,
    order_id: str,
    secret: str,
    account: str,
    cert: Path | None,
    cert_sha256: str | None,
    ca: Path | None,
    nice: int,
    max_memory_mb: int,
    max_cpu_seconds: int,
    output: Path,
) -> None:
    """Write a `.cpu` order from credentials a market issued (the market's own
    `livecd market order new` does this in one step)."""
    from livecd.orders import cert_pin, write_order

    if sum(x is not None for x in (cert, cert_sha256, ca)) > 1:
        raise UserError("give only one of --cert, --cert-sha256 and --ca")
    pin = cert_pin(cert) if cert else cert_sha256
    ca_pem = _read_text(ca).strip() + "\n" if ca else None
    sell = SellOrder(
        market_url=market_url,
        order_id=order_id,
        secret=secret,
        account=account,
        cert_sha256=pin,
        ca_pem=ca_pem,
        nice=nice,
        max_memory_mb=max_memory_mb,
        max_cpu_seconds=max_cpu_seconds,
    )
    write_order(sell, output)
    click.echo(f"wrote {output}: order {order_id} for account {account} at {market_url}")


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None


@order.command("check")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the orders (secrets hidden) as JSON.")
def check(files: tuple[Path, ...], as_json: bool) -> None:
    """Validate `.cpu` files; name every problem of every bad one."""
    from livecd.orders import check_order_file

    bad: list[str] = []
    good: list[dict[str, object]] = []
    for path in files:
        try:
            sell = check_order_file(path)
        except UserError as exc:
            bad.append(str(exc))
            continue
        good.append(_summary(path, sell))
        if not as_json:
            click.echo(f"{path}: ok: order {sell.order_id} for {sell.account} at {sell.market_url}")
    if as_json:
        click.echo(json.dumps(good, indent=2))
    for line in bad[:-1]:
        click.echo(f"livecd: error: {line}", err=True)
    if bad:
        raise UserError(bad[-1])


def _summary(path: Path, sell: SellOrder) -> dict[str, object]:
    return {
        "file": str(path),
        "market_url": sell.market_url,
        "order_id": sell.order_id,
        "account": sell.account,
        "trust": "cert_sha256" if sell.cert_sha256 else "ca_pem" if sell.ca_pem else "loopback",
        "nice": sell.nice,
        "max_memory_mb": sell.max_memory_mb,
        "max_cpu_seconds": sell.max_cpu_seconds,
    }


@order.command("fetch")
@click.argument("url")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True)
@click.option("--cacert", type=click.Path(path_type=Path), help="CA bundle to verify HTTPS with.")
def fetch(url: str, output: Path, cacert: Path | None) -> None:
    """Download a `.cpu` order, validate it, and write it only if it is valid."""
    from livecd.orders import fetch_order

    sell = fetch_order(url, output, ca_bundle=cacert)
    click.echo(f"wrote {output}: order {sell.order_id} for {sell.account} at {sell.market_url}")
