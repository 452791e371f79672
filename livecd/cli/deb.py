"""`livecd deb -o DIR`: the `cpushare` Debian package, for machines that run Debian."""

from __future__ import annotations

import time
from pathlib import Path

import click

from livecd.cli import main


@main.command()
@click.option(
    "-o",
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Write cpushare_VERSION_amd64.deb here.",
)
@click.option(
    "--source-date-epoch",
    "epoch",
    type=int,
    help="Timestamp of every file in the package. Default: $SOURCE_DATE_EPOCH, "
    "else the last commit's time.",
)
def deb(output_dir: Path, epoch: int | None) -> None:
    """Build the `cpushare` package: the live CD's seller, supervisor and jail for a
    Debian 12 or Ubuntu 24.04 machine (`apt install ./cpushare_*.deb`). The same
    sources and epoch give the same bytes."""
    from livecd.build import source_date_epoch
    from livecd.debpkg.archive import build

    started = time.monotonic()
    built = build(output_dir, source_date_epoch(epoch))
    click.echo(
        f"{built.path}: {built.size} bytes, sha256 {built.sha256} "
        f"({time.monotonic() - started:.1f} s)"
    )
