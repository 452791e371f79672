"""`livecd market serve` in this process, up to the point where uvicorn would start."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest
import uvicorn

from market.server import ServeOptions, serve


def test_what_exists_at_start_is_frozen_out_of_the_collectors_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The modules and the app live as long as the process: the collector's full passes
    should walk only what requests made."""
    frozen: list[int] = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda _self: frozen.append(gc.get_freeze_count()))
    try:
        serve(ServeOptions(db=tmp_path / "market.db", host="127.0.0.1", port=1))
    finally:
        gc.unfreeze()
    assert frozen and frozen[0] > 10_000
