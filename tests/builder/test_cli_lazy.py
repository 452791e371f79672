"""The lazy `livecd` group: its table names every command and its module, and `livecd
--help` lists them all without importing any command or heavy library."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from livecd.cli import COMMANDS, main

HEAVY = ("requests", "jinja2", "pycdlib", "livecd.build", "starlette", "uvicorn")


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_commands_module_defines_it(name: str) -> None:
    importlib.import_module(f"livecd.cli.{COMMANDS[name].module}")
    command = main.commands[name]
    first_words = COMMANDS[name].short_help.split()[:3]
    assert (command.help or "").split()[:3] == first_words, "the table's help is another's"


def test_the_table_lists_every_command() -> None:
    for lazy in COMMANDS.values():
        importlib.import_module(f"livecd.cli.{lazy.module}")
    assert set(main.commands) == set(COMMANDS)


def test_help_lists_every_command_and_imports_none() -> None:
    script = (
        "import sys\n"
        "from livecd.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(' '.join(sorted(sys.modules)), file=sys.stderr)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    modules = set(proc.stderr.split())
    assert not {m for m in modules for h in HEAVY if m == h or m.startswith(h + ".")}
    assert not {m for m in modules if m.startswith("livecd.cli.")}
    for name, lazy in COMMANDS.items():
        assert f"  {name} " in proc.stdout and lazy.short_help in proc.stdout
