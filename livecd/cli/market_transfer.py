"""`livecd market export|import`: move a whole market to another database (SQLite to
PostgreSQL and back) as one JSON-lines file, ids and coins as they were."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from livecd.cli.market_group import db_option, market, user_errors
from livecd.errors import UserError
from livecd.files import atomic_file

if TYPE_CHECKING:
    from market.dialect import Location


def _summary(counts: dict[str, int]) -> str:
    keys = ("accounts", "hosts", "jobs", "results", "transfers")
    return ", ".join(f"{counts.get(key, 0)} {key}" for key in keys)


@market.command("export")
@db_option
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False, allow_dash=True),
    required=True,
    help="The file to write (JSON lines, e.g. market.jsonl; '-' for standard output).",
)
def market_export(db: Location, output: Path) -> None:
    """Write every account, key hash, order, host, program, job, lease, result, coin
    transfer and setting of the market to one file, for `livecd market import`.

    The file is one consistent snapshot, so the market may keep serving meanwhile; it
    holds the API key and host secret hashes: keep it as private as the database.
    """
    from market.transfer import export

    if str(output) == "-":
        counts = user_errors(lambda: export(db, sys.stdout))
    else:
        try:
            with atomic_file(output, 0o600) as (raw, _):
                text = io.TextIOWrapper(raw, encoding="utf-8", newline="\n")
                counts = user_errors(lambda: export(db, text))
                text.flush()
                text.detach()
        except OSError as exc:
            raise UserError(f"cannot write {output}: {exc.strerror or exc}") from None
    click.echo(f"market: exported {_summary(counts)}", err=True)


@market.command("import")
@db_option
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, allow_dash=True))
def market_import(db: Location, file: Path) -> None:
    """Load FILE (from `livecd market export`) into the new, empty market database --db.

    All of it or nothing: the load is one transaction, checked against the coin ledger
    before it commits. A database that already holds a market is refused; create an
    empty one (e.g. `createdb market`, or a SQLite path that does not exist yet).
    """
    from market.transfer import load

    try:
        if str(file) == "-":
            counts = user_errors(lambda: load(db, sys.stdin))
        else:
            with open(file, encoding="utf-8") as lines:
                counts = user_errors(lambda: load(db, lines))
    except OSError as exc:
        raise UserError(f"cannot read {file}: {exc.strerror or exc}") from None
    click.echo(f"market: imported {_summary(counts)}; the ledger adds up", err=True)
