"""The `livecd` command line. Commands are thin: parse, call a library function, print."""

from __future__ import annotations

import logging
from typing import Any

import click

from livecd import __version__
from livecd.errors import UserError


class LivecdGroup(click.Group):
    """A group that turns UserError into one clean line on stderr and its exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except UserError as exc:
            for line in str(exc).splitlines():
                click.echo(f"livecd: error: {line}", err=True)
            ctx.exit(exc.exit_code)


@click.group(cls=LivecdGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="livecd")
@click.option("-v", "--verbose", is_flag=True, help="Log every external command that runs.")
def main(verbose: bool) -> None:
    """Build, boot and test the CPUShare live CD, and run the CPUShare market and seller.

    \b
    Typical use:
      livecd build                      build libcaca-cpushare-livecd.iso (default profile)
      livecd smoke ISO                  boot it headless under QEMU and check the console
      livecd boot ISO                   boot it in a QEMU window, like `qemu -cdrom ISO`
      livecd inspect ISO                show its volume, boot entries, partitions and files
    """
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING, format="livecd: %(message)s"
    )


def _register() -> None:
    # Each command group lives in its own module; importing registers it on `main`.
    from livecd.cli import (  # noqa: F401
        boot,
        build,
        deb,
        job,
        lock,
        market,
        order,
        sell,
    )
    from livecd.cli import inspect as _inspect  # noqa: F401


_register()
