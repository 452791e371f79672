"""`livecd sell FILE.cpu...`: run one seller process per sell order on this machine.

Its options are the seller's own (cpushare.seller.options), turned into click options
here and handed on to each `python3 -m cpushare.seller`. The sellers die with this
command, however it ends: each watches a lifeline pipe whose other end only this process
holds (cpushare.seller.lifeline); SIGTERM or Ctrl-C stops them first, so that they hand
their leases back before it returns.

It enrolls this machine once per order before starting them (as many seats as sellers
serve the order) and hands each seller its host identity and seat through a pipe of its
own (`--host-fd`): the host secret is never in argv, the environment or a file.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from cpushare.seller.agent import EXIT_REVOKED, STOP_SECONDS, stop_on_signal
from cpushare.seller.host import Identity, enroll_machine, write_identity
from cpushare.seller.options import Option, SellerOptions, declared, to_argv
from livecd import toolchain
from livecd.cli import main
from livecd.errors import UserError
from livecd.orders import check_order_file

F = TypeVar("F", bound=Callable[..., Any])


def _click_type(option: Option) -> click.ParamType[Any, Any]:
    if option.kind is Path:
        return click.Path(path_type=Path)
    if option.kind is int:
        low, high = option.low, option.high
        return click.IntRange(
            None if low is None else int(low), None if high is None else int(high)
        )
    return click.FloatRange(option.low, option.high)


def seller_options(command: F) -> F:
    """Every seller option as a click option of `command`."""
    for option in reversed(declared()):
        command = click.option(
            option.flag,
            option.name,
            type=_click_type(option),
            default=option.default,
            show_default=option.default is not None,
            envvar=option.env,
            show_envvar=option.env is not None,
            help=option.help[0].upper() + option.help[1:] + ".",
        )(command)
    return command


@main.command()
@click.argument("orders", nargs=-1, required=True, type=click.Path(path_type=Path))
@seller_options
def sell(orders: tuple[Path, ...], **options: Any) -> None:
    """Sell this machine's CPU: one seller per `.cpu` file (copies of one order are fine),
    each checking the seccomp jail first and printing `cpushare:` console lines."""
    loaded = [check_order_file(path) for path in orders]
    seller = SellerOptions(**options)
    previous = signal.signal(signal.SIGTERM, stop_on_signal)
    try:
        identities = enroll_machine(loaded, seller.backoff_max)
        revoked = [str(path) for path, i in zip(orders, identities, strict=True) if i is None]
        if revoked:
            raise UserError(f"the market revoked the order of {', '.join(revoked)}")
        codes = _run_sellers(orders, [i for i in identities if i is not None], seller)
    finally:
        signal.signal(signal.SIGTERM, previous)
    ended = list(zip(orders, codes, strict=True))
    revoked = [str(path) for path, code in ended if code == EXIT_REVOKED]
    if revoked:
        raise UserError(f"the market revoked the host of {', '.join(revoked)}")
    failed = [str(path) for path, code in ended if code not in (0, 143)]
    if failed:
        raise UserError(f"sellers stopped with an error: {', '.join(failed)}")


def _run_sellers(
    orders: tuple[Path, ...], identities: list[Identity], options: SellerOptions
) -> list[int]:
    """Start one seller per order, each handed its identity on a pipe of its own and
    the lifeline; their exit statuses once all have ended."""
    extra = to_argv(options)
    env = {**toolchain.jail_environment(), **os.environ}
    lifeline, keep = os.pipe()
    sellers: list[subprocess.Popen[bytes]] = []
    try:
        try:
            for path, identity in zip(orders, identities, strict=True):
                host_fd, handover = os.pipe()
                write_identity(handover, identity)
                argv = [sys.executable, "-m", "cpushare.seller", str(path), *extra]
                argv += ["--lifeline", str(lifeline), "--host-fd", str(host_fd)]
                try:
                    sellers.append(subprocess.Popen(argv, env=env, pass_fds=(lifeline, host_fd)))
                finally:
                    os.close(host_fd)
        finally:
            os.close(lifeline)
        return [p.wait() for p in sellers]
    except (KeyboardInterrupt, SystemExit):
        _stop(sellers)
        raise
    finally:
        os.close(keep)


def _stop(sellers: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM each seller, give them time to hand their leases back, then SIGKILL."""
    for p in sellers:
        p.terminate()
    for p in sellers:
        try:
            p.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
