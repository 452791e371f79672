"""`livecd inspect ISO`: what a built ISO holds and how it boots."""

from __future__ import annotations

from pathlib import Path

import click

from livecd.cli import main


@main.command("inspect")
@click.argument("iso", type=click.Path(path_type=Path))
@click.option("--files", "all_files", is_flag=True, help="List every file with its size.")
@click.option("--json", "as_json", is_flag=True, help="Print everything as JSON.")
def inspect_command(iso: Path, all_files: bool, as_json: bool) -> None:
    """Show ISO's volume, El Torito boot entries, hybrid MBR and GPT partitions, and files.

    By default the files are summed per top-level entry and the largest are listed;
    --files lists them all. A manifest.json at the ISO's root is shown too.
    """
    from diskformats.isoread import inspect_iso
    from livecd.report_text import render_text, to_json

    report = inspect_iso(iso)
    click.echo(to_json(report) if as_json else render_text(report, all_files=all_files))
