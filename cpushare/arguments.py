"""A command line of positional arguments and `--long VALUE` options, parsed without argparse.

The fleet runs for as long as the live CD sells, and every module it imports stays in its
memory and in the pages its sellers share with it: argparse and gettext are about 0.6 MiB
of it, for a command line that /etc/init.d/cpushare writes. This parser does what the
fleet's needs: positionals in order, `--name VALUE` or `--name=VALUE`, each value
converted (a ValueError's message says why it is not one), defaults given as text
converted like a value, `-h`/`--help`. Its messages read as argparse's: a usage line, then
`PROG: error: ...`, exit status 2.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from types import SimpleNamespace

from cpushare.record import record

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any


@record(frozen=True)
class Argument:
    """One argument: a positional (`positional`), else an option `--name-with-dashes`."""

    name: str  # the attribute of the parsed namespace
    convert: Callable[[str], Any]
    help: str
    default: Any = None
    metavar: str = ""
    positional: bool = False

    @property
    def flag(self) -> str:
        return self.name if self.positional else "--" + self.name.replace("_", "-")

    @property
    def shown(self) -> str:
        return self.metavar or self.name.upper()


def parse(
    prog: str, description: str, arguments: Sequence[Argument], argv: Sequence[str] | None
) -> SimpleNamespace:
    """The values of `argv` (sys.argv[1:] if None); on --help the help, and on a bad
    command line the usage and one error line, then SystemExit (0, 2)."""
    words = list(sys.argv[1:] if argv is None else argv)
    positionals = [a for a in arguments if a.positional]
    options = {a.flag: a for a in arguments if not a.positional}
    values: dict[str, Any] = {}

    def fail(message: str) -> SystemExit:
        print(usage(prog, arguments), file=sys.stderr)
        print(f"{prog}: error: {message}", file=sys.stderr)
        return SystemExit(2)

    def convert(argument: Argument, text: str) -> Any:
        try:
            return argument.convert(text)
        except ValueError as exc:
            label = argument.shown if argument.positional else argument.flag
            raise fail(f"argument {label}: {exc}") from None

    while words:
        word = words.pop(0)
        if word in ("-h", "--help"):
            print(help_text(prog, description, arguments))
            raise SystemExit(0)
        if word.startswith("-") and word != "-":
            flag, equals, text = word.partition("=")
            option = options.get(flag)
            if option is None:
                raise fail(f"unrecognized arguments: {word}")
            if not equals:
                if not words:
                    raise fail(f"argument {flag}: expected one argument")
                text = words.pop(0)
            values[option.name] = convert(option, text)
        elif len(values.keys() & {a.name for a in positionals}) < len(positionals):
            argument = next(a for a in positionals if a.name not in values)
            values[argument.name] = convert(argument, word)
        else:
            raise fail(f"unrecognized arguments: {word}")
    missing = [a.shown for a in positionals if a.name not in values]
    if missing:
        raise fail(f"the following arguments are required: {', '.join(missing)}")
    for option in options.values():
        if option.name not in values:
            given = option.default
            values[option.name] = convert(option, given) if isinstance(given, str) else given
    return SimpleNamespace(**values)


def usage(prog: str, arguments: Sequence[Argument]) -> str:
    words = [f"usage: {prog} [-h]"]
    words += [f"[{a.flag} {a.shown}]" for a in arguments if not a.positional]
    words += [a.shown for a in arguments if a.positional]
    return " ".join(words)


def help_text(prog: str, description: str, arguments: Sequence[Argument]) -> str:
    lines = [usage(prog, arguments), "", description, "", "positional arguments:"]
    lines += [f"  {a.shown:<24}{a.help}" for a in arguments if a.positional]
    lines += ["", "options:", f"  {'-h, --help':<24}show this help message and exit"]
    for a in arguments:
        if not a.positional:
            lines += [f"  {a.flag} {a.shown}", f"  {'':<24}{a.help}"]
    return "\n".join(lines)
