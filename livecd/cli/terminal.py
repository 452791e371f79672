"""Long work shown on the terminal: stage lines with timings, progress bars."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

import click

from livecd.progress import Progress

T = TypeVar("T")


class TerminalProgress(Progress):
    """Stages as lines with their timings on stderr, long loops as progress bars."""

    def finished(self, name: str, seconds: float) -> None:
        click.echo(f"  {name:<20} {seconds:6.2f} s", err=True)

    def each(self, items: Sequence[T], label: str, show: Callable[[T], str]) -> Iterable[T]:
        if not items:
            return

        def show_item(item: T | None) -> str | None:
            return show(item) if item is not None else None

        with click.progressbar(
            items,
            label=f"  {label}",
            file=sys.stderr,
            item_show_func=show_item,
        ) as bar:
            yield from bar
