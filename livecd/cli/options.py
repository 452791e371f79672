"""Click options that several commands share, declared once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def options(*decorators: Callable[[Any], Any]) -> Callable[[F], F]:
    """One decorator that applies `decorators` in the order written (the first is the
    first option of the command's help)."""

    def apply(command: F) -> F:
        for decorator in reversed(decorators):
            command = decorator(command)
        return command

    return apply


json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")

cache_option = click.option(
    "--cache",
    type=click.Path(path_type=Path),
    default=None,
    help="Cache of packages and apt state. Default: $XDG_CACHE_HOME/livecd.",
)


def profile_option(help: str) -> Callable[[F], F]:
    """`-p/--profile`: the profile (TOML) a command reads (`build`, `lock`, `verify`)."""
    return click.option(
        "-p", "--profile", "profile_path", type=click.Path(path_type=Path), help=help
    )


def apt_sources_option(help: str) -> Callable[[F], F]:
    """`--apt-sources`: apt sources files to take the Debian mirror from, repeatable."""
    return click.option(
        "--apt-sources", multiple=True, type=click.Path(exists=True, path_type=Path), help=help
    )


# The file `market order new|create|cd|stick` write: the order's `.cpu`, its CD or stick.
order_output_option = click.option(
    "-o", "--output", type=click.Path(path_type=Path, dir_okay=False), required=True
)

# What an order a market issues lets its jobs use (`market order new` and `order create`).
order_terms_options = options(
    click.option("--nice", type=click.IntRange(0, 19), default=19, show_default=True),
    click.option("--max-memory-mb", type=click.IntRange(1), default=256, show_default=True),
    click.option("--max-cpu-seconds", type=click.IntRange(1), default=60, show_default=True),
)
