"""`livecd market ...`: run the CPUShare market, administer it, and use it as a buyer.

Operator commands (`account`, `order`, `host`, `ledger-check`) open the market's
database directly on the market's host; buyer commands (`submit`, `cancel`, `status`,
`results`) talk to its HTTP API with an account's API key.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import click

from cpushare.limits import JobLimits, default_wall_seconds
from livecd.cli import main
from livecd.errors import UserError
from livecd.files import atomic_write as write_atomically
from livecd.orders import write_order

if TYPE_CHECKING:
    from market.dialect import Location

F = TypeVar("F", bound=Callable[..., Any])
_DEFAULT = JobLimits()


def _echo_json(doc: object) -> None:
    click.echo(json.dumps(doc, indent=2, sort_keys=True))


def _market_errors() -> tuple[type[Exception], ...]:
    from market.buyer import ClientError
    from market.errors import MarketError
    from market.schema import SchemaTooNew

    return ClientError, MarketError, SchemaTooNew


def _user_errors(fn: Callable[[], Any]) -> Any:
    """Run fn, turning the market's refusals into one-line user errors."""
    try:
        return fn()
    except _market_errors() as exc:
        raise UserError(str(exc)) from None


@main.group()
def market() -> None:
    """The CPUShare market: serve it, issue accounts and orders, submit jobs, get results."""


def _db_location(_ctx: click.Context, _param: click.Parameter, value: str) -> Location:
    from market.dialect import location

    return location(value)


_db_option = click.option(
    "--db",
    required=True,
    envvar="CPUSHARE_MARKET_DB",
    callback=_db_location,
    help="The market's database: a SQLite file, or a postgresql:// URL "
    "(e.g. postgresql:///market?host=/var/run/postgresql) [env CPUSHARE_MARKET_DB].",
)


def _redacted(url: str) -> str:
    """A database URL fit for a log: without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")).geturl()


@market.command()
@_db_option
def migrate(db: Location) -> None:
    """Create the market's database or bring its schema up to this version (`serve` does
    it on start too)."""
    from market.store import open_database

    _user_errors(lambda: open_database(db).close())
    click.echo("market: the database schema is up to date", err=True)


@market.command()
@_db_option
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
def serve(
    db: Location,
    listen: str,
    cert: Path | None,
    key: Path | None,
    public_url: str | None,
    lease_seconds: float,
) -> None:
    """Serve the market API. Plain HTTP is allowed on loopback only; elsewhere give
    --cert and --key. The database is created and migrated on start."""
    from market.server import ServeError, ServeOptions, parse_listen, prepare
    from market.server import serve as run_server

    try:
        host, port = parse_listen(listen)
        options = ServeOptions(db, host, port, cert, key, public_url, lease_seconds)
        url = _user_errors(lambda: prepare(options))
    except ServeError as exc:
        raise UserError(str(exc)) from None
    shown = _redacted(db) if isinstance(db, str) else db
    click.echo(f"market: serving {shown} on {listen}; orders point sellers at {url}", err=True)
    run_server(options)


@market.command()
def openapi() -> None:
    """Print the market's OpenAPI document, as it serves it at /v1/openapi.json."""
    from market.app import openapi_document

    _echo_json(openapi_document())


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
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
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
        _echo_json({"cert": str(cert_out), "key": str(key_out), "cert_sha256": pin})
    else:
        click.echo(f"wrote {cert_out} and {key_out}; orders pin cert_sha256 = {pin}")


@market.group()
def account() -> None:
    """Accounts: who buys jobs and who is credited CPUCoins."""


@account.command("new")
@click.argument("name")
@_db_option
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def account_new(name: str, db: Location, as_json: bool) -> None:
    """Create account NAME and print its API key (shown only this once)."""
    from market.admin import new_account

    issued = _user_errors(lambda: new_account(db, name))
    if as_json:
        _echo_json({"account": issued.name, "api_key": issued.api_key})
    else:
        click.echo(f"account {issued.name}: api key {issued.api_key}")


@account.command("list")
@_db_option
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def account_list(db: Location, as_json: bool) -> None:
    """List accounts with their orders and CPUCoins."""
    from market.admin import list_accounts

    rows = _user_errors(lambda: list_accounts(db))
    if as_json:
        _echo_json(rows)
        return
    for row in rows:
        click.echo(f"{row['name']:20} orders={row['orders']:<5} coins={row['coins']:.3f}")


@account.command("grant")
@click.argument("name")
@click.argument("coins", type=click.FloatRange(0.001, 1e12))
@_db_option
def account_grant(name: str, coins: float, db: Location) -> None:
    """Give account NAME COINS CPUCoins (a buyer needs them to submit jobs)."""
    from market.admin import grant

    balance = _user_errors(lambda: grant(db, name, coins))
    click.echo(f"account {name}: {balance:.3f} coins")


@account.command("disable")
@click.argument("name")
@_db_option
def account_disable(name: str, db: Location) -> None:
    """Disable account NAME at once: its key, orders and hosts are refused until enabled."""
    from market.admin import set_account_disabled

    _user_errors(lambda: set_account_disabled(db, name, True))
    click.echo(f"account {name}: disabled; its hosts' leases went back to the queue")


@account.command("enable")
@click.argument("name")
@_db_option
def account_enable(name: str, db: Location) -> None:
    """Enable account NAME again."""
    from market.admin import set_account_disabled

    _user_errors(lambda: set_account_disabled(db, name, False))
    click.echo(f"account {name}: enabled")


@market.command("ledger-check")
@_db_option
def ledger_check(db: Location) -> None:
    """Check that the coin books add up (balances and reservations = coins granted)."""
    from market.admin import check_ledger

    problems = _user_errors(lambda: check_ledger(db))
    if problems:
        raise UserError("the ledger does not add up: " + "; ".join(problems[:10]))
    click.echo("ledger: the books add up")


@market.group()
def host() -> None:
    """Hosts: the machines enrolled with sell orders (one identity each, kept in RAM)."""


@host.command("list")
@_db_option
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def host_list(db: Location, as_json: bool) -> None:
    """List hosts with their order, account, network, seats and active leases."""
    from market.admin import list_hosts

    rows = _user_errors(lambda: list_hosts(db))
    if as_json:
        _echo_json(rows)
        return
    for row in rows:
        state = "revoked" if row["revoked"] else f"leases={row['leases']}"
        click.echo(
            f"{row['host']} order={row['order']} account={row['account']} "
            f"network={row['network']} seats={row['seats']} {state}"
        )


@host.command("revoke")
@click.argument("host_id")
@_db_option
def host_revoke(host_id: str, db: Location) -> None:
    """Revoke HOST_ID at once and for good; its leases go back to the queue."""
    from market.admin import revoke_host

    _user_errors(lambda: revoke_host(db, host_id))
    click.echo(f"host {host_id}: revoked")


@market.group("order")
def market_order() -> None:
    """Sell orders: the `.cpu` files sellers run with."""


@market_order.command("new")
@_db_option
@click.option("--account", required=True, help="The account the order credits.")
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False), required=True)
@click.option("--public-url", help="The market as sellers reach it [default: from serve].")
@click.option("--nice", type=click.IntRange(0, 19), default=19, show_default=True)
@click.option("--max-memory-mb", type=click.IntRange(1), default=256, show_default=True)
@click.option("--max-cpu-seconds", type=click.IntRange(1), default=60, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def market_order_new(
    db: Location,
    account: str,
    output: Path,
    public_url: str | None,
    nice: int,
    max_memory_mb: int,
    max_cpu_seconds: int,
    as_json: bool,
) -> None:
    """Issue a sell order for ACCOUNT and write it to a `.cpu` file."""
    from market.admin import new_order

    order = _user_errors(
        lambda: new_order(
            db,
            account,
            lambda o: write_order(o, output),
            public_url=public_url,
            nice=nice,
            max_memory_mb=max_memory_mb,
            max_cpu_seconds=max_cpu_seconds,
        )
    )
    if as_json:
        _echo_json(
            {
                "file": str(output),
                "order_id": order.order_id,
                "account": account,
                "market_url": order.market_url,
            }
        )
    else:
        click.echo(f"wrote {output}: order {order.order_id} for {account} at {order.market_url}")


@market_order.command("revoke")
@click.argument("order_id")
@_db_option
def market_order_revoke(order_id: str, db: Location) -> None:
    """Revoke ORDER_ID: it enrolls no more hosts and its hosts are refused at once."""
    from market.admin import revoke_order

    _user_errors(lambda: revoke_order(db, order_id))
    click.echo(f"order {order_id}: revoked, with its hosts")


def _buyer(fn: F) -> F:
    """The options every buyer command shares: where the market is and the API key."""
    options = [
        click.option(
            "--market",
            "market_url",
            envvar="CPUSHARE_MARKET",
            required=True,
            help="The market's URL [env CPUSHARE_MARKET].",
        ),
        click.option(
            "--api-key",
            envvar="CPUSHARE_API_KEY",
            required=True,
            help="The account's API key [env CPUSHARE_API_KEY].",
        ),
        click.option(
            "--cacert",
            type=click.Path(path_type=Path, dir_okay=False),
            envvar="CPUSHARE_CACERT",
            help="Certificate to verify the market with [env CPUSHARE_CACERT].",
        ),
        click.option("--json", "as_json", is_flag=True, help="Print the result as JSON."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _client(market_url: str, api_key: str, cacert: Path | None) -> Any:
    from market.buyer import BuyerClient

    return BuyerClient(market_url, api_key, cacert=cacert)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None


@market.command()
@click.argument("program", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--input",
    "inputs",
    multiple=True,
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="An input file (repeatable).",
)
@click.option(
    "--replicas",
    type=click.IntRange(1, 10),
    help="Accept a job only once this many hosts on distinct networks agree; 1 trusts every "
    "seller (for a group's own machines) [default: adaptive: two until hosts earn trust].",
)
@click.option(
    "--cpu-seconds", type=click.IntRange(1), default=_DEFAULT.cpu_seconds, show_default=True
)
@click.option(
    "--memory-mb", type=click.IntRange(1), default=_DEFAULT.memory_bytes >> 20, show_default=True
)
@click.option(
    "--output-bytes", type=click.IntRange(0), default=_DEFAULT.output_bytes, show_default=True
)
@_buyer
def submit(
    program: Path,
    inputs: tuple[Path, ...],
    replicas: int | None,
    cpu_seconds: int,
    memory_mb: int,
    output_bytes: int,
    market_url: str,
    api_key: str,
    cacert: Path | None,
    as_json: bool,
) -> None:
    """Upload PROGRAM (a job ELF) and queue one job per --input file."""
    client = _client(market_url, api_key, cacert)
    code = _read(program)
    data = [_read(path) for path in inputs]
    limits = JobLimits(
        cpu_seconds=cpu_seconds,
        wall_seconds=default_wall_seconds(cpu_seconds),
        memory_bytes=memory_mb << 20,
        output_bytes=output_bytes,
    ).as_dict()
    sha256 = _user_errors(lambda: client.upload_program(code))
    ids = _user_errors(lambda: client.submit(sha256, data, replicas=replicas, limits=limits))
    if as_json:
        _echo_json(
            {
                "program": sha256,
                "jobs": [
                    {"job": job, "input": str(path)} for job, path in zip(ids, inputs, strict=True)
                ],
            }
        )
        return
    for job, path in zip(ids, inputs, strict=True):
        click.echo(f"job {job}: {path}")


@market.command()
@click.argument("job", type=int)
@_buyer
def cancel(job: int, market_url: str, api_key: str, cacert: Path | None, as_json: bool) -> None:
    """Cancel open JOB: its leases end and its reserved coins come back."""
    _user_errors(lambda: _client(market_url, api_key, cacert).cancel(job))
    if as_json:
        _echo_json({"job": job, "cancelled": True})
    else:
        click.echo(f"job {job}: cancelled")


@market.command()
@_buyer
def status(market_url: str, api_key: str, cacert: Path | None, as_json: bool) -> None:
    """The queue, active leases, sellers seen, throughput and coins per account."""
    doc = _user_errors(lambda: _client(market_url, api_key, cacert).status())
    if as_json:
        _echo_json(doc)
        return
    jobs = doc["jobs"]
    click.echo(
        f"jobs: {jobs.get('open', 0)} open, {jobs.get('done', 0)} done, "
        f"{jobs.get('failed', 0)} failed; {doc['leases_active']} leased"
    )
    click.echo(f"sellers seen (10 min): {doc['sellers_seen']} on {doc['orders_seen']} orders")
    click.echo(
        f"results: {doc['results_last_minute']} last minute, {doc['results_last_hour']} last hour"
    )
    for name, coins in doc["coins"].items():
        click.echo(f"coins: {name} {coins:.3f}")


@market.command()
@click.argument("job", type=int, required=False)
@click.option("--all", "all_jobs", is_flag=True, help="Every finished job of the account.")
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="Directory to write JOB.out files into.",
)
@_buyer
def results(
    job: int | None,
    all_jobs: bool,
    out: Path,
    market_url: str,
    api_key: str,
    cacert: Path | None,
    as_json: bool,
) -> None:
    """Download the accepted output of JOB (or --all finished jobs) into --out."""
    if (job is None) == (not all_jobs):
        raise UserError("give a JOB id or --all, not both and not neither")
    client = _client(market_url, api_key, cacert)
    done = (
        list(_user_errors(lambda: list(client.jobs("done"))))
        if all_jobs
        else [_user_errors(lambda: client.job(job))]
    )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create {out}: {exc.strerror}") from None
    written = []
    for entry in done:
        job_id = int(entry["id"])
        data = _user_errors(partial(client.output, job_id))
        path = out / f"{job_id}.out"
        write_atomically(path, data, 0o644)
        written.append({**entry, "file": str(path)})
        if not as_json:
            click.echo(f"job {job_id}: {entry['outcome']} -> {path} ({len(data)} bytes)")
    if as_json:
        _echo_json(written)
