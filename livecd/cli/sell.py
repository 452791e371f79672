"""`livecd sell FILE.cpu...`: run one seller process per sell order on this machine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click

from livecd import toolchain
from livecd.cli import main
from livecd.errors import UserError
from livecd.orders import check_order_file


@main.command()
@click.argument("orders", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--status-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Keep one STEM.json status file per seller here.",
)
@click.option(
    "--loader",
    type=click.Path(path_type=Path, dir_okay=False),
    help="The jail loader [default: $CPUSHARE_LOADER, the installed one, or a host build].",
)
@click.option(
    "--backoff-max",
    type=click.FloatRange(0.1),
    default=60.0,
    show_default=True,
    help="Longest pause between attempts while the market is unreachable.",
)
def sell(
    orders: tuple[Path, ...], status_dir: Path | None, loader: Path | None, backoff_max: float
) -> None:
    """Sell this machine's CPU: one seller per `.cpu` file (copies of one order are fine),
    each checking the seccomp jail first and printing `cpushare:` console lines."""
    for path in orders:
        check_order_file(path)
    extra: list[str] = ["--backoff-max", str(backoff_max)]
    if status_dir:
        extra += ["--status-dir", str(status_dir)]
    if loader:
        extra += ["--loader", str(loader)]
    env = {**toolchain.jail_environment(), **os.environ}
    sellers = [
        subprocess.Popen([sys.executable, "-m", "cpushare.seller", str(path), *extra], env=env)
        for path in orders
    ]
    try:
        codes = [p.wait() for p in sellers]
    except KeyboardInterrupt:
        for p in sellers:
            p.terminate()
        codes = [p.wait() for p in sellers]
    failed = [str(path) for path, code in zip(orders, codes, strict=True) if code not in (0, 143)]
    if failed:
        raise UserError(f"sellers stopped with an error: {', '.join(failed)}")
