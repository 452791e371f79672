"""`livecd market submit|cancel|status|results`: the buyer's commands, over the market's
HTTP API with an account's API key."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial, wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import click

from cpushare.limits import JobLimits, default_wall_seconds
from livecd.cli.market_admin import market_order
from livecd.cli.market_group import echo_json, market, user_errors
from livecd.cli.options import json_option, options, order_output_option, order_terms_options
from livecd.errors import UserError
from livecd.files import atomic_write as write_atomically

if TYPE_CHECKING:
    from market.buyer import BuyerClient

F = TypeVar("F", bound=Callable[..., Any])
_DEFAULT = JobLimits()


# The options every buyer command shares: where the market is, the API key, --json.
_buyer_options = options(
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
    json_option,
)


# Makes the account's client of the --market, --api-key and --cacert a command was given.
Connect = Callable[[], "BuyerClient"]


def _client(market_url: str, api_key: str, cacert: Path | None) -> BuyerClient:
    from market.buyer import BuyerClient

    client: BuyerClient = user_errors(lambda: BuyerClient(market_url, api_key, cacert=cacert))
    return client


def _buyer(command: F) -> F:
    """`_buyer_options` on `command`, which takes `connect` (and --json's `as_json`) instead
    of the market's URL, the API key and the CA: the client is made when it calls
    `connect()`, so a bad URL is an error only then."""

    @wraps(command)
    def run(*args: Any, market_url: str, api_key: str, cacert: Path | None, **kwargs: Any) -> Any:
        return command(*args, connect=partial(_client, market_url, api_key, cacert), **kwargs)

    return cast(F, _buyer_options(run))


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
    connect: Connect,
    as_json: bool,
) -> None:
    """Upload PROGRAM (a job ELF) and queue one job per --input file."""
    client = connect()
    code = _read(program)
    data = [_read(path) for path in inputs]
    limits = JobLimits(
        cpu_seconds=cpu_seconds,
        wall_seconds=default_wall_seconds(cpu_seconds),
        memory_bytes=memory_mb << 20,
        output_bytes=output_bytes,
    ).as_dict()
    sha256 = user_errors(lambda: client.upload_program(code))
    ids = user_errors(lambda: client.submit(sha256, data, replicas=replicas, limits=limits))
    if as_json:
        echo_json(
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
def cancel(job: int, connect: Connect, as_json: bool) -> None:
    """Cancel open JOB: its leases end and its reserved coins come back."""
    user_errors(lambda: connect().cancel(job))
    if as_json:
        echo_json({"job": job, "cancelled": True})
    else:
        click.echo(f"job {job}: cancelled")


@market.command()
@_buyer
def status(connect: Connect, as_json: bool) -> None:
    """Your account: its queue, leases, machines seen, results and coins."""
    doc = user_errors(lambda: connect().status())
    if as_json:
        echo_json(doc)
        return
    jobs = doc["jobs"]
    click.echo(
        f"jobs: {jobs.get('open', 0)} open, {jobs.get('done', 0)} done, "
        f"{jobs.get('failed', 0)} failed; {doc['leases_active']} leased"
    )
    click.echo(
        f"machines seen (10 min): {doc['machines_seen']} on {doc['orders_seen']} orders, "
        f"asking on {doc['seats_seen']} seats"
    )
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
    connect: Connect,
    as_json: bool,
) -> None:
    """Download the accepted output of JOB (or --all finished jobs) into --out."""
    if (job is None) == (not all_jobs):
        raise UserError("give a JOB id or --all, not both and not neither")
    client = connect()
    done = (
        list(user_errors(lambda: list(client.jobs("done"))))
        if job is None  # then --all
        else [user_errors(lambda: client.job(job))]
    )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create {out}: {exc.strerror}") from None
    written = []
    for entry in done:
        job_id = int(entry["id"])
        data = user_errors(partial(client.output, job_id))
        path = out / f"{job_id}.out"
        write_atomically(path, data, 0o644)
        written.append({**entry, "file": str(path)})
        if not as_json:
            click.echo(f"job {job_id}: {entry['outcome']} -> {path} ({len(data)} bytes)")
    if as_json:
        echo_json(written)


# A volunteer's orders over the API, beside the operator's `order new --db`.
@market_order.command("create")
@order_output_option
@order_terms_options
@_buyer
def order_create(
    output: Path,
    nice: int,
    max_memory_mb: int,
    max_cpu_seconds: int,
    connect: Connect,
    as_json: bool,
) -> None:
    """Create a sell order crediting your account and write its `.cpu` file to -o (keep it
    secret: it sells for you). `order cd` and `order stick` download it ready to boot."""
    from cpushare.order import parse_order

    client = connect()
    text = user_errors(
        lambda: client.create_order(
            nice=nice, max_memory_mb=max_memory_mb, max_cpu_seconds=max_cpu_seconds
        )
    )
    write_atomically(output, text.encode(), 0o600)
    order = parse_order(text)
    if as_json:
        echo_json({"file": str(output), "order_id": order.order_id, "account": order.account})
    else:
        click.echo(f"wrote {output}: order {order.order_id} for {order.account}")


def _download(what: str) -> Callable[[Callable[..., Any]], Any]:
    """`order cd|stick ORDER_ID -o FILE`: one of the account's orders as a CD or a stick."""

    def command(fn: Callable[..., Any]) -> Any:
        @market_order.command(fn.__name__.removeprefix("order_"), help=fn.__doc__)
        @click.argument("order_id")
        @order_output_option
        @_buyer
        def run(
            order_id: str,
            output: Path,
            connect: Connect,
            as_json: bool,
        ) -> None:
            client = connect()
            size = user_errors(lambda: getattr(client, what)(order_id, output))
            if as_json:
                echo_json({"file": str(output), "order_id": order_id, "bytes": size})
            else:
                click.echo(f"wrote {output}: order {order_id} ({size} bytes)")

        return run

    return command


@_download("livecd")
def order_cd() -> None:
    """Download your live CD with ORDER_ID built in (an ISO: burn it, or write it to a USB
    stick with dd). The market's operator names the CD it is made from."""


@_download("stick")
def order_stick() -> None:
    """Download a small CPUSHARE stick image holding ORDER_ID: write it with dd to a USB
    stick and boot any CPUShare live CD with it plugged in."""
