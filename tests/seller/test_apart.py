"""`cpushare.seller.apart`: work done in a forked child, its result read back; what the
work imports stays out of the process that asked."""

from __future__ import annotations

import os
import sys

import pytest

from cpushare.seller.apart import ChildFailed, in_child


def test_the_result_comes_back_and_the_imports_stay_in_the_child() -> None:
    assert "colorsys" not in sys.modules  # nothing here imports it

    def work() -> object:
        import colorsys  # noqa: F401

        return {"pid": os.getpid(), "loaded": "colorsys" in sys.modules, "list": [1, "a"]}

    got = in_child(work)
    assert got == {"pid": got["pid"], "loaded": True, "list": [1, "a"]}
    assert got["pid"] != os.getpid()
    assert "colorsys" not in sys.modules


def test_a_child_that_fails_is_an_error_not_a_result(capfd: pytest.CaptureFixture[str]) -> None:
    def work() -> object:
        raise ValueError("broken")

    with pytest.raises(ChildFailed, match="status 70"):
        in_child(work)
    assert "ValueError: broken" in capfd.readouterr().err
