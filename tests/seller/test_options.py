"""The seller's options, declared once: the same on `python3 -m cpushare.seller`, the fleet
and `livecd sell`, and handed on by `livecd sell` unchanged."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from cpushare.record import fields
from cpushare.seller.fleet import FLEET_DECIDES
from cpushare.seller.options import SellerOptions, add_arguments, declared, from_arguments, to_argv
from livecd.cli.sell import sell

EVERY = SellerOptions(
    status_dir=Path("/run/x"),
    cpu=1,
    loader=Path("loader"),
    wait=0.5,
    request_timeout=2.5,
    backoff_max=0.4,
    memory_cap=1 << 25,
    output_cap=1 << 22,
    program_cache=1 << 21,
    queue_input=1 << 18,
    nice=7,
    job_lines=2.5,
)


def _parse(argv: list[str]) -> SellerOptions:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return from_arguments(parser.parse_args(argv))


def _help(*argv: str) -> str:
    ran = subprocess.run([sys.executable, *argv, "--help"], capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    return ran.stdout


def test_every_field_is_an_option_everywhere() -> None:
    assert all(getattr(EVERY, f.name) != f.default for f in fields(SellerOptions))
    flags = [option.flag for option in declared()]
    assert len(flags) == len(fields(SellerOptions))
    seller = _help("-m", "cpushare.seller")
    fleet = _help("-m", "cpushare.seller.fleet")
    livecd = _help("-c", "from livecd.cli import main; main()", "sell")
    for option in declared():
        assert option.flag in seller and option.flag in livecd
        assert (option.flag in fleet) == (option.name not in FLEET_DECIDES)


def test_what_livecd_sell_is_given_each_seller_is_given() -> None:
    assert _parse(to_argv(EVERY)) == EVERY
    assert _parse(to_argv(SellerOptions())) == SellerOptions() and to_argv(SellerOptions()) == []
    context = sell.make_context("sell", ["lab.cpu", *to_argv(EVERY)])
    given = {k: v for k, v in context.params.items() if k != "orders"}
    assert SellerOptions(**given) == EVERY


def test_the_status_dir_may_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CPUSHARE_STATUS_DIR", "/run/from-env")
    assert _parse([]).status_dir == Path("/run/from-env")
    assert _parse(["--status-dir", "/run/given"]).status_dir == Path("/run/given")
    context = sell.make_context("sell", ["lab.cpu"])
    assert context.params["status_dir"] == Path("/run/from-env")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--nice", "20"], "argument --nice: 20 is more than 19"),
        (["--wait", "soon"], "argument --wait: 'soon' is not a number"),
        (["--memory-cap", "1.5"], "argument --memory-cap: '1.5' is not an integer"),
        (["--backoff-max", "0"], "argument --backoff-max: 0 is less than 0.1"),
    ],
)
def test_a_bad_value_is_one_clear_line(argv: list[str], message: str) -> None:
    ran = subprocess.run(
        [sys.executable, "-m", "cpushare.seller", "lab.cpu", *argv],
        capture_output=True,
        text=True,
    )
    assert ran.returncode == 2
    assert ran.stderr.splitlines()[-1].endswith(f"error: {message}")
    assert "Traceback" not in ran.stderr
