"""The seller's options, declared once.

Each field of `SellerOptions` is one command-line option: its help, bounds and environment
variable sit in the field's metadata. From them come the options of `python3 -m
cpushare.seller` and of the fleet (`add_arguments`), `livecd sell`'s click options
(livecd/cli/sell.py reads `declared()`), and the command line `livecd sell` hands each
seller (`to_argv`). Adding an option is adding a field.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from cpushare.arguments import Argument
from cpushare.record import field, fields, record, replace

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    import argparse
    from typing import Any


@record(frozen=True)
class Option:
    """How one field appears on a command line."""

    name: str
    kind: type  # int, float or Path
    default: Any
    help: str
    low: float | None = None
    high: float | None = None
    env: str | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def metavar(self) -> str:
        if self.low is not None and self.high is not None:
            return f"{self.low:g}-{self.high:g}"
        return {int: "N", float: "SECONDS", Path: "PATH"}[self.kind]

    def convert(self, text: str) -> Any:
        """The value of `text`; ValueError with a reason when it is not one."""
        try:
            value = self.kind(text)
        except ValueError:
            what = "an integer" if self.kind is int else "a number"
            raise ValueError(f"{text!r} is not {what}") from None
        if self.low is not None and value < self.low:
            raise ValueError(f"{text} is less than {self.low:g}")
        if self.high is not None and value > self.high:
            raise ValueError(f"{text} is more than {self.high:g}")
        return value


def _meta(
    help: str, *, low: float | None = None, high: float | None = None, env: str | None = None
) -> dict[str, Any]:
    return {"help": help, "low": low, "high": high, "env": env}


@record(frozen=True)
class SellerOptions:
    """How one seller runs; the defaults are the live CD's."""

    status_dir: Path | None = field(
        default=None,
        metadata=_meta(
            "keep ORDER-STEM.json with the seller's state here", env="CPUSHARE_STATUS_DIR"
        ),
    )
    cpu: int | None = field(default=None, metadata=_meta("run on this CPU only", low=0))
    loader: Path | None = field(default=None, metadata=_meta("the jail loader [default: find it]"))
    wait: float = field(
        default=30.0, metadata=_meta("seconds one lease request waits for a job", low=0)
    )
    request_timeout: float = field(
        default=30.0,
        metadata=_meta("seconds a request may take to answer beyond the lease wait", low=0.1),
    )
    backoff_max: float = field(
        default=60.0,
        metadata=_meta("longest pause between attempts while the market is unreachable", low=0.1),
    )
    memory_cap: int | None = field(
        default=None,
        metadata=_meta("the most memory in bytes a job may have on this machine", low=1),
    )
    output_cap: int | None = field(
        default=None,
        metadata=_meta(
            "the largest output in bytes a job may write on this machine (leases asking for "
            "more are refused)",
            low=1,
        ),
    )
    program_cache: int | None = field(
        default=None,
        metadata=_meta("bytes of programs kept in memory between jobs", low=0),
    )
    queue_input: int | None = field(
        default=None,
        metadata=_meta(
            "bytes of input the jobs leased ahead may hold (one job is always allowed)", low=0
        ),
    )
    nice: int | None = field(
        default=None, metadata=_meta("this nice level instead of the order's", low=0, high=19)
    )
    job_lines: float = field(
        default=0.0,
        metadata=_meta(
            "show one job's console lines in this many seconds at most, the others counted "
            "(0: every job's)",
            low=0,
        ),
    )


_KINDS: dict[str, type] = {"int": int, "float": float, "Path": Path}


def _kind(hint: str) -> type:
    """int, float or Path from the annotation `T` or `T | None` (the text of it)."""
    name, _, rest = hint.partition(" | ")
    assert rest in ("", "None") and name in _KINDS, hint
    return _KINDS[name]


def declared() -> list[Option]:
    """Every seller option, in declaration order."""
    hints = SellerOptions.__annotations__  # text: from __future__ import annotations
    found = []
    for f in fields(SellerOptions):
        assert f.has_default, f.name
        meta = f.metadata
        kind = _kind(hints[f.name])
        found.append(
            Option(f.name, kind, f.default, meta["help"], meta["low"], meta["high"], meta["env"])
        )
    return found


def _argparse_type(option: Option) -> Callable[[str], Any]:
    import argparse  # loaded already by whoever made the parser

    def convert(text: str) -> Any:
        try:
            return option.convert(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


def _default_and_help(option: Option) -> tuple[Any, str]:
    """An option's default (text from its environment variable, if set) and its help."""
    default = option.default
    help = option.help
    if option.env is not None:
        default = os.environ.get(option.env) or default
        help += f" [env {option.env}]"
    elif default is not None:
        help += f" [default: {default}]"
    return default, help


def add_arguments(parser: argparse.ArgumentParser, skip: Iterable[str] = ()) -> None:
    """The seller options, but those in `skip`, as options of `parser`."""
    for option in declared():
        if option.name in skip:
            continue
        # argparse converts a default given as text (from the environment) like an argument.
        default, help = _default_and_help(option)
        parser.add_argument(
            option.flag,
            dest=option.name,
            type=_argparse_type(option),
            default=default,
            metavar=option.metavar,
            help=help,
        )


def as_arguments(skip: Iterable[str] = ()) -> list[Argument]:
    """The seller options, but those in `skip`, for cpushare.arguments (the fleet's)."""
    found = []
    for option in declared():
        if option.name not in skip:
            default, help = _default_and_help(option)
            found.append(Argument(option.name, option.convert, help, default, option.metavar))
    return found


def from_arguments(args: object, base: SellerOptions | None = None) -> SellerOptions:
    """`base` (the defaults if None) with the options `add_arguments` put into `args`."""
    given = {o.name: getattr(args, o.name) for o in declared() if hasattr(args, o.name)}
    return replace(base or SellerOptions(), **given)


def to_argv(options: SellerOptions) -> list[str]:
    """The options of `python3 -m cpushare.seller` that give `options` (defaults left out)."""
    argv = []
    for option in declared():
        value = getattr(options, option.name)
        if value != option.default:
            argv += [option.flag, str(value)]
    return argv
