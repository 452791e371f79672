"""The FAT reader of the CPUSHARE medium: volumes made by the builder's FAT writer and by
mkfs.fat and mcopy (dosfstools, mtools) as independent writers, FAT12, FAT16 and FAT32;
broken and hostile volumes; the orders copied from a stick image as from a mounted one."""

from __future__ import annotations

import os
import struct
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from cpushare.console import parse_line
from cpushare.fatread import FatReadError, FatVolume
from cpushare.order import MAX_ORDER_BYTES, SellOrder
from cpushare.startup import MAX_MEDIUM_ENTRIES, fat_orders
from diskformats.fat import make_fat_image
from livecd.orders import write_order

MTOOLS_ENV = {**os.environ, "MTOOLS_SKIP_CHECK": "1", "TZ": "UTC"}
FILES = {
    "volunteer.cpu": b"order " * 1000,
    "Long Name, Mixed Case.CPU": b"long",
    "UPPER.CPU": b"upper",
    "lower.cpu": b"lower",
    "empty.cpu": b"",
    "notes.txt": b"not an order\n",
}


@contextmanager
def opened(image: Path) -> Iterator[FatVolume]:
    fd = os.open(image, os.O_RDONLY)
    try:
        yield FatVolume(fd)
    finally:
        os.close(fd)


def mtools_image(tmp_path: Path, fat: int, kib: int, files: dict[str, bytes]) -> Path:
    """A volume made by mkfs.fat, its files copied in by mcopy."""
    image = tmp_path / f"fat{fat}.img"
    subprocess.run(
        ["mkfs.fat", "-C", "-F", str(fat), "-n", "CPUSHARE", str(image), str(kib)],
        check=True,
        capture_output=True,
    )
    for name, data in files.items():
        source = tmp_path / "source"
        source.write_bytes(data)
        subprocess.run(
            ["mcopy", "-i", str(image), str(source), f"::/{name}"],
            env=MTOOLS_ENV,
            check=True,
            capture_output=True,
        )
    return image


def read_back(image: Path) -> dict[str, bytes]:
    with opened(image) as vol:
        return {e.name: vol.read(e) for e in vol.root(100) if not e.is_dir}


@pytest.mark.parametrize(("fat", "kib"), [(12, 2048), (16, 20480), (32, 40960)])
def test_mtools_volumes_read_back_the_same(tmp_path: Path, fat: int, kib: int) -> None:
    image = mtools_image(tmp_path, fat, kib, FILES)
    with opened(image) as vol:
        assert vol.layout.bits == fat
    assert read_back(image) == FILES


def test_the_builders_volumes_read_back_the_same_with_their_folders(tmp_path: Path) -> None:
    files = {**FILES, "sub/inside.cpu": b"not at the root"}
    image = tmp_path / "stick.img"
    image.write_bytes(make_fat_image(files, label="CPUSHARE", volume_id=7, mtime=0))
    assert read_back(image) == FILES
    with opened(image) as vol:
        folders = [e.name for e in vol.root(100) if e.is_dir]
    assert folders == ["sub"]


def _patch(image: Path, offset: int, data: bytes) -> None:
    with open(image, "r+b") as f:
        f.seek(offset)
        f.write(data)


def _entry_offset(image: Path, name: bytes) -> int:
    """Where the short entry named `name` (11 bytes) is in the image."""
    at = image.read_bytes().find(name)
    assert at > 0
    return at


def test_a_cluster_chain_that_loops_or_leaves_the_volume_is_refused(tmp_path: Path) -> None:
    image = mtools_image(tmp_path, 12, 2048, {"LOOP.CPU": b"x" * 3000})
    with opened(image) as vol:
        (entry,) = vol.root(10)
        lay = vol.layout
    # The file's first cluster points back at itself in the (first) FAT...
    fat_entry = entry.cluster * 3 // 2
    with open(image, "r+b") as f:
        f.seek(lay.fat_offset + fat_entry)
        pair = int.from_bytes(f.read(2), "little")
        shift, keep = (4, 0x000F) if entry.cluster & 1 else (0, 0xF000)
        pair = (pair & keep) | (entry.cluster << shift)
        f.seek(lay.fat_offset + fat_entry)
        f.write(pair.to_bytes(2, "little"))
    with opened(image) as vol:
        # ... which reads no more clusters than the size asks for: the loop ends.
        assert vol.read(entry) == b"x" * 3000
        # A size that claims more: read clusters run out of the file's own bytes; a
        # start cluster outside the volume is refused.
        bad = type(entry)(name=entry.name, is_dir=False, cluster=lay.clusters + 2, size=10)
        with pytest.raises(FatReadError, match="outside the volume"):
            vol.read(bad)


def test_a_chain_shorter_than_its_size_is_refused(tmp_path: Path) -> None:
    image = mtools_image(tmp_path, 16, 20480, {"SHORT.CPU": b"s" * 100})
    _patch(image, _entry_offset(image, b"SHORT   CPU") + 28, struct.pack("<I", 1 << 20))
    with opened(image) as vol:
        (entry,) = vol.root(10)
        with pytest.raises(FatReadError, match="chain ends before"):
            vol.read(entry)


@pytest.mark.parametrize(
    ("offset", "data", "message"),
    [
        (510, b"\0\0", "no boot sector signature"),
        (11, struct.pack("<H", 100), "a sector of 100 bytes"),
        (13, b"\x03", "3 sectors per cluster"),
        (16, b"\0", "no reserved sector or no FAT"),
        (19, struct.pack("<H", 10), "sizes do not add up"),
    ],
)
def test_a_broken_boot_sector_says_what_is_wrong(
    tmp_path: Path, offset: int, data: bytes, message: str
) -> None:
    image = mtools_image(tmp_path, 12, 2048, {})
    _patch(image, offset, data)
    if offset == 19:
        _patch(image, 32, b"\0\0\0\0")
    with pytest.raises(FatReadError, match=message), opened(image):
        pass


def test_a_cut_volume_is_refused(tmp_path: Path) -> None:
    image = mtools_image(tmp_path, 16, 20480, {"A.CPU": b"a"})
    image.write_bytes(image.read_bytes()[:4096])
    with pytest.raises(FatReadError, match="ends before"), opened(image) as vol:
        vol.read(vol.root(10)[0])


def _errors(out: str) -> dict[str, str]:
    fields = [parse_line(line) for line in out.splitlines()]
    return {f.get("file", f.get("device", "")): f["detail"] for f in fields if f}


def test_orders_are_copied_from_the_stick_image_without_mounting_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    order = tmp_path / "good.cpu"
    write_order(SellOrder("http://127.0.0.1:9", "o-good", "s" * 24, "lab", nice=5), order)
    files = {
        "good.cpu": order.read_bytes(),
        "folder.cpu/x": b"a folder named like an order",
        "huge.CPU": b"h" * (MAX_ORDER_BYTES + 1),
        "notes.txt": b"not an order\n",
    }
    image = tmp_path / "stick.img"
    image.write_bytes(make_fat_image(files, label="CPUSHARE", volume_id=7, mtime=0))
    copies = tmp_path / "copies"
    copies.mkdir()
    assert fat_orders(image, copies) == [copies / "good.cpu"]
    assert (copies / "good.cpu").read_bytes() == order.read_bytes()
    errors = _errors(capsys.readouterr().out)
    assert sorted(errors) == ["folder.cpu", "huge.CPU"]
    assert "directory" in errors["folder.cpu"]
    assert "larger than an order may be" in errors["huge.CPU"]


def test_a_long_name_that_would_leave_the_copies_folder_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = tmp_path / "stick.img"
    image.write_bytes(
        make_fat_image({"Aa.cpu": b"a", "Abc.cpu": b"b"}, label="CPUSHARE", volume_id=7, mtime=0)
    )
    # In the long-name slot of "Abc.cpu", its "b" becomes a "/", checksum unchanged.
    at = image.read_bytes().find("Abc.c".encode("utf-16-le"))
    assert at > 0
    _patch(image, at + 2, "/".encode("utf-16-le"))
    copies = tmp_path / "copies"
    copies.mkdir()
    assert fat_orders(image, copies) == [copies / "Aa.cpu"]
    assert sorted(p.name for p in copies.iterdir()) == ["Aa.cpu"]
    assert "not a file's" in _errors(capsys.readouterr().out)["A/c.cpu"]


def test_a_root_with_too_many_entries_is_read_only_so_far(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    names = {f"f{i:05}.txt": b"" for i in range(MAX_MEDIUM_ENTRIES + 5)}
    image = tmp_path / "stick.img"
    image.write_bytes(
        make_fat_image({**names, "zz.cpu": b"late"}, label="CPUSHARE", volume_id=7, mtime=0)
    )
    copies = tmp_path / "copies"
    copies.mkdir()
    with opened(image) as vol:
        assert len(vol.root(MAX_MEDIUM_ENTRIES)) == MAX_MEDIUM_ENTRIES + 1
    assert fat_orders(image, copies) == []
    assert "the rest are ignored" in capsys.readouterr().out


def test_what_is_not_a_fat_volume_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = tmp_path / "blank.img"
    image.write_bytes(bytes(65536))
    assert fat_orders(image, tmp_path) == []
    assert _errors(capsys.readouterr().out) == {
        str(image): "cannot read it: no boot sector signature"
    }
