"""The fleet's start: no cyclic collection while the live CD's fleet imports and starts
(`python3 -m cpushare.seller.fleet`), on again once what the sellers share is frozen."""

from __future__ import annotations

import gc
import subprocess
import sys

from cpushare.seller.fleet import share_with_sellers

# The module run as `python3 -m` would run it, its command line stopping at --help.
AS_MAIN = """
import gc, runpy, sys
sys.argv = ["fleet", "--help"]
try:
    runpy.run_module("cpushare.seller.fleet", run_name="__main__")
except SystemExit:
    pass
print("enabled" if gc.isenabled() else "disabled")
"""


def _run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return done.stdout.splitlines()[-1]


def test_run_as_the_fleet_the_collector_is_off_through_the_imports() -> None:
    assert _run(AS_MAIN) == "disabled"


def test_imported_elsewhere_the_module_leaves_the_collector_alone() -> None:
    assert _run("import gc, cpushare.seller.fleet; print(gc.isenabled())") == "True"


def test_sharing_with_the_sellers_freezes_the_heap_and_turns_the_collector_on() -> None:
    gc.disable()
    try:
        share_with_sellers()
        assert gc.isenabled()
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.enable()
