"""The `livecd` command line. Commands are thin: parse, call a library function, print.

The group is lazy: each command's module is imported only when that command runs (or its
own help is asked for), so `livecd --help` and a quick `livecd job run` do not pay for
requests, jinja2, pycdlib and the whole builder. The table below names each command's
module and short help; `tests/builder/test_cli_lazy.py` checks it against the commands.
"""

from __future__ import annotations

import importlib
import logging
import traceback
from typing import Any, NamedTuple

import click

from livecd import __version__
from livecd.errors import InternalError, UserError


class _Lazy(NamedTuple):
    module: str  # imported under livecd.cli; importing it registers the command on `main`
    short_help: str


COMMANDS: dict[str, _Lazy] = {
    "boot": _Lazy("boot", "Boot ISO in QEMU for a person, like `qemu -cdrom ISO`."),
    "build": _Lazy("build", "Build the live CD ISO."),
    "deb": _Lazy("deb", "Build the `cpushare` Debian package, for machines that run Debian."),
    "inspect": _Lazy("inspect", "Show ISO's volume, boot entries, partitions and files."),
    "job": _Lazy("job", "Jobs: native x86-64 programs that run in the strict-seccomp jail."),
    "lock": _Lazy("lock", "Write a lock file pinning the packages the profile resolves to."),
    "market": _Lazy("market", "The CPUShare market: serve it, issue accounts and orders."),
    "order": _Lazy("order", "Sell orders (`.cpu` files): write, check and fetch them."),
    "sell": _Lazy("sell", "Sell this machine's CPU: one seller per `.cpu` file."),
    "smoke": _Lazy("boot", "Boot ISO headless and check that the live system comes up."),
    "verify": _Lazy("lock", "Rebuild ISO from the lock and check the two are the same."),
}


class LivecdGroup(click.Group):
    """A lazy group that turns a UserError into one clean `livecd: error:` line and an
    InternalError (or any other exception) into one line saying it is a bug."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        lazy = COMMANDS.get(cmd_name)
        if cmd_name not in self.commands and lazy is not None:
            importlib.import_module(f"livecd.cli.{lazy.module}")
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # From the table: listing the commands must not import them.
        rows = [(name, COMMANDS[name].short_help) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except UserError as exc:
            for line in str(exc).splitlines():
                click.echo(f"livecd: error: {line}", err=True)
            ctx.exit(exc.exit_code)
        except (click.exceptions.Exit, click.ClickException, click.Abort, KeyboardInterrupt):
            raise
        except Exception as exc:  # the one place every other failure ends: a bug
            if ctx.params.get("verbose"):
                click.echo(traceback.format_exc().rstrip(), err=True)
            what = "internal error" if isinstance(exc, InternalError) else type(exc).__name__
            click.echo(
                f"livecd: bug: {what}: {exc} (please report it; run with -v for the traceback)",
                err=True,
            )
            ctx.exit(InternalError.exit_code)


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
