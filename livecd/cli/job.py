"""`livecd job build|run`: build a job with the SDK, run it in the jail exactly as a seller."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from cpushare.jail import JailError, Limits, Outcome, run_job
from livecd.cli import main
from livecd.errors import UserError

_DEFAULT = Limits()
_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    """Bytes in `text`: a number with an optional K, M, G or T suffix (powers of 1024)."""
    cleaned = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = cleaned[-1:] if cleaned[-1:] in _SIZE_UNITS else ""
    number = cleaned[: len(cleaned) - len(unit)]
    if not number.isdigit():
        raise UserError(f"{text!r} is not a size: use a number of bytes, or e.g. 64M, 1G")
    return int(number) * _SIZE_UNITS[unit]


def read_file(path: Path, what: str) -> bytes:
    """The bytes of `path`, or a UserError naming it as `what`."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read {what} {path}: {exc.strerror}") from exc


@main.group()
def job() -> None:
    """Jobs: native x86-64 programs that run in the strict-seccomp jail.

    \b
    A job is C that includes cpushare.h and defines `int main(void)`: it reads fd 0,
    writes fd 1, and can do nothing else. Test one before submitting it:
      livecd job build dither.c -o dither.job
      livecd job run dither.job --input picture.pgm > halftone.pbm
    """


@job.command("build")
@click.argument("sources", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help="The job.")
def build(sources: tuple[Path, ...], output: Path) -> None:
    """Compile C SOURCES with the SDK (header, start code, linker script) into a job."""
    from livecd.toolchain import build_job

    build_job(sources, output)
    click.echo(f"wrote {output}", err=True)


@job.command("run")
@click.argument("program", type=click.Path(path_type=Path))
@click.option("--input", "input_path", type=click.Path(path_type=Path), help="Job input (fd 0).")
@click.option("--cpu-seconds", type=int, default=_DEFAULT.cpu_seconds, show_default=True)
@click.option("--wall-seconds", type=float, default=_DEFAULT.wall_seconds, show_default=True)
@click.option("--memory", default="256M", show_default=True, help="All the job's memory.")
@click.option("--output-limit", default="64M", show_default=True, help="Most output kept.")
@click.option("--nice", type=int, default=_DEFAULT.nice, show_default=True)
def run(
    program: Path,
    input_path: Path | None,
    cpu_seconds: int,
    wall_seconds: float,
    memory: str,
    output_limit: str,
    nice: int,
) -> None:
    """Run PROGRAM in the jail as a seller would: its output goes to stdout, then one line
    on stderr gives its classification and CPU time. Exit status 0 when the job ended
    ok, 1 for any other classification, 2 for bad input."""
    code = read_file(program, "job")
    data = read_file(input_path, "input file") if input_path else b""
    try:
        limits = Limits(
            cpu_seconds=cpu_seconds,
            wall_seconds=wall_seconds,
            memory_bytes=parse_size(memory),
            output_bytes=parse_size(output_limit),
            nice=nice,
        )
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    try:
        result = run_job(code, data, limits, loader=toolchain_loader())
    except JailError as exc:
        raise UserError(str(exc)) from exc
    if result.outcome is Outcome.INVALID:
        raise UserError(f"{program} is not a job the jail can run: {result.detail}")
    sys.stdout.buffer.write(result.output)
    sys.stdout.flush()
    click.echo(
        f"livecd: job {program.name}: {result.outcome} ({result.detail}), "
        f"cpu {result.cpu_seconds:.3f} s, wall {result.wall_seconds:.3f} s",
        err=True,
    )
    if result.outcome is not Outcome.OK:
        sys.exit(1)


def toolchain_loader() -> Path:
    """$CPUSHARE_LOADER when set, else the host's cached build of the loader."""
    override = os.environ.get("CPUSHARE_LOADER")
    if override:
        return Path(override)
    from livecd import toolchain  # the C toolchain only when the loader must be built

    return toolchain.loader()
