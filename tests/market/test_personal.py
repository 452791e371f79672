"""A volunteer's downloads without a server: the stick image (read back with mtools), the
personal CD's refusals, and the terms an order may be created with."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from diskformats.orderslot import SLOT_SIZE, find_slot
from livecd.cli import main
from market.errors import MarketError
from market.personal import NoLiveCd, check_terms, personal_iso, stick_image
from tests.formats.test_orderslot import ORDER, small_base


def test_the_stick_image_is_a_cpushare_fat_holding_the_order(tmp_path: Path) -> None:
    image = tmp_path / "stick.img"
    image.write_bytes(stick_image(ORDER, "o-1234.cpu"))
    label = subprocess.run(
        ["mlabel", "-s", "-i", str(image), "::"], capture_output=True, text=True, check=True
    ).stdout
    assert "CPUSHARE" in label
    listing = subprocess.run(
        ["mdir", "-b", "-i", str(image), "::"], capture_output=True, text=True, check=True
    ).stdout
    assert listing.split() == ["::/o-1234.cpu"]
    copied = subprocess.run(
        ["mtype", "-i", str(image), "::/o-1234.cpu"], capture_output=True, check=True
    ).stdout
    assert copied.decode() == ORDER
    assert stick_image(ORDER, "o-1234.cpu") == image.read_bytes()


def test_a_personal_cd_carries_the_order_at_the_slot(tmp_path: Path) -> None:
    base = small_base(tmp_path / "base.iso")
    iso = personal_iso(base, ORDER, "o-1234.cpu")
    data = iso.read()
    assert iso.size == len(data) == base.stat().st_size
    slot = data[find_slot(base) : find_slot(base) + SLOT_SIZE]
    assert b"etc/cpushare/o-1234.cpu" in slot and ORDER.encode() in slot


def test_no_base_and_a_base_without_slot_are_one_line_refusals(tmp_path: Path) -> None:
    with pytest.raises(NoLiveCd, match=r"serves no live CD: .* serve --livecd BASE\.iso"):
        personal_iso(None, ORDER)
    old = small_base(tmp_path / "old.iso", slot=b"")
    with pytest.raises(MarketError, match=r"cannot carry orders: .* has no order slot"):
        personal_iso(old, ORDER)


def test_order_terms_default_and_are_bounded() -> None:
    assert check_terms({}) == {"nice": 19, "max_memory_mb": 256, "max_cpu_seconds": 60}
    assert check_terms({"nice": 5})["nice"] == 5
    for bad, message in [
        ({"nice": 20}, "nice must be an integer in 0..19"),
        ({"nice": True}, "nice must be an integer"),
        ({"max_memory_mb": "1"}, "max_memory_mb must be an integer"),
        ({"secret": "x"}, "unknown order field 'secret'"),
    ]:
        with pytest.raises(MarketError, match=message):
            check_terms(bad)


def test_serve_refuses_a_base_without_slot_in_one_line(tmp_path: Path) -> None:
    old = small_base(tmp_path / "old.iso", slot=b"")
    db = tmp_path / "market.db"
    result = CliRunner().invoke(main, ["market", "serve", "--db", str(db), "--livecd", str(old)])
    assert result.exit_code == 2
    assert result.output.splitlines() == [
        f"livecd: error: --livecd: {old}: this ISO has no order slot (/live/order.img): "
        "build it again with this version of livecd"
    ]
    assert not db.exists()
