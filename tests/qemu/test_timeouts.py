"""Every wait for the guest scales with LIVECD_TIMEOUT_FACTOR."""

from __future__ import annotations

import pytest

from livecd.qemu.guest import scaled


@pytest.mark.parametrize(
    ("factor", "expected"), [(None, 10.0), ("3", 30.0), ("0", 1.0), ("slow", 10.0)]
)
def test_waits_scale_with_the_factor(
    monkeypatch: pytest.MonkeyPatch, factor: str | None, expected: float
) -> None:
    if factor is None:
        monkeypatch.delenv("LIVECD_TIMEOUT_FACTOR", raising=False)
    else:
        monkeypatch.setenv("LIVECD_TIMEOUT_FACTOR", factor)
    assert scaled(10) == pytest.approx(expected)
