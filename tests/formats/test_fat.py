"""The FAT image writer, checked by fsck.fat (dosfstools) and mtools as independent readers."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diskformats.fat import FatError, fat_image, make_fat_image

EPOCH = 1_700_000_000  # 2023-11-14 22:13:20 UTC
MTOOLS_ENV = {**os.environ, "MTOOLS_SKIP_CHECK": "1", "TZ": "UTC"}


def esp_files() -> dict[str, bytes]:
    return {
        "EFI/BOOT/BOOTX64.EFI": b"shim" * 250_000 + b"end",
        "EFI/BOOT/grubx64.efi": bytes(range(256)) * 9_000,
        "EFI/BOOT/mmx64.efi": b"\x90" * 800_001,
        "EFI/debian/Grub Config.cfg": b"search --file /.disk/info\n",
        ".disk/info": b"CPUShare live CD",
        "EMPTY": b"",
    }


def write(tmp_path: Path, files: dict[str, bytes], **kw: object) -> Path:
    args: dict[str, object] = {"label": "CPUSHARE", "volume_id": 0x1234ABCD, "mtime": EPOCH}
    args.update(kw)
    image = tmp_path / "esp.img"
    image.write_bytes(make_fat_image(files, **args))  # type: ignore[arg-type]
    return image


def fsck(image: Path) -> str:
    """`fsck.fat -n -v`: fails the test unless the file system is clean."""
    proc = subprocess.run(["fsck.fat", "-n", "-v", str(image)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def fat_bits_and_clusters(fsck_output: str) -> tuple[int, int]:
    bits = re.search(r"(\d+) bit entries", fsck_output)
    clusters = re.search(r"(\d+) data clusters", fsck_output)
    assert bits and clusters, fsck_output
    return int(bits.group(1)), int(clusters.group(1))


def extract(image: Path, dest: Path) -> dict[str, bytes]:
    dest.mkdir()
    subprocess.run(
        ["mcopy", "-s", "-m", "-i", str(image), "::/", str(dest)],
        env=MTOOLS_ENV,
        check=True,
        capture_output=True,
    )
    return {p.relative_to(dest).as_posix(): p.read_bytes() for p in dest.rglob("*") if p.is_file()}


def mtools(tool: str, image: Path, *args: str) -> str:
    return subprocess.run(
        [tool, "-i", str(image), *args], env=MTOOLS_ENV, check=True, capture_output=True, text=True
    ).stdout


def test_fsck_finds_a_clean_file_system(tmp_path: Path) -> None:
    out = fsck(write(tmp_path, esp_files()))
    assert "Media byte 0xf8" in out
    assert "2 FATs" in out


def test_mcopy_extracts_exactly_the_same_files_and_names(tmp_path: Path) -> None:
    files = esp_files()
    assert extract(write(tmp_path, files), tmp_path / "out") == files


def test_mdir_shows_label_serial_names_and_times(tmp_path: Path) -> None:
    listing = mtools("mdir", write(tmp_path, esp_files()), "-/", "::/")
    assert "Volume in drive : is CPUSHARE" in listing
    assert "Volume Serial Number is 1234-ABCD" in listing
    assert re.search(r"grubx64  efi\s+2304000 2023-11-14  22:13", listing)
    assert re.search(r"GRUBCO~1 CFG\s+26 2023-11-14  22:13  Grub Config.cfg", listing)


def test_times_come_from_mtime(tmp_path: Path) -> None:
    out = tmp_path / "out"
    extract(write(tmp_path, esp_files()), out)
    assert {p.stat().st_mtime for p in out.rglob("*") if p.is_file()} == {EPOCH}


@pytest.mark.parametrize(
    ("mtime", "shown"), [(0, "1980-01-01   0:00"), (2**40, "2107-12-31  23:59")]
)
def test_times_outside_the_fat_range_are_clamped(tmp_path: Path, mtime: int, shown: str) -> None:
    listing = mtools("mdir", write(tmp_path, {"A": b"a"}, mtime=mtime), "::/")
    assert re.search(rf"A\s+1 {shown}", listing), listing


def test_same_input_gives_the_same_bytes() -> None:
    files = esp_files()
    reordered = dict(reversed(files.items()))
    assert make_fat_image(files, label="CPUSHARE", volume_id=7, mtime=EPOCH) == make_fat_image(
        reordered, label="CPUSHARE", volume_id=7, mtime=EPOCH
    )


def test_image_is_small_and_a_whole_number_of_cd_sectors(tmp_path: Path) -> None:
    files = esp_files()
    image = write(tmp_path, files)
    size = image.stat().st_size
    assert size % 2048 == 0
    assert size < sum(len(d) for d in files.values()) * 1.02 + 64 * 1024


def many_small_files(count: int) -> dict[str, bytes]:
    # 512-byte clusters fit these best, so the cluster count follows the file count.
    return {f"D{i // 256}/F{i}.BIN": b"%d" % i * (1 + i % 100) for i in range(count)}


def test_fat12_and_fat16_on_both_sides_of_the_cluster_limit(tmp_path: Path) -> None:
    found: dict[int, tuple[int, dict[str, bytes]]] = {}
    for count in range(3820, 3845):
        files = many_small_files(count)
        image = write(tmp_path, files)
        bits, clusters = fat_bits_and_clusters(fsck(image))
        if bits == 12 and clusters > found.get(12, (0, {}))[0]:
            found[12] = (clusters, files)
        if bits == 16 and clusters < found.get(16, (1 << 20, {}))[0]:
            found[16] = (clusters, files)
    assert 4070 <= found[12][0] <= 4084
    assert 4087 <= found[16][0] <= 4100  # 4085 and 4086 are ambiguous
    for bits, (_, files) in found.items():
        image = write(tmp_path, files)
        assert extract(image, tmp_path / f"out{bits}") == files


def test_large_image_uses_big_clusters_and_the_32_bit_sector_count(tmp_path: Path) -> None:
    files = {"BIG.BIN": bytes(range(251)) * 160_000, "SMALL.TXT": b"x"}
    image = write(tmp_path, files)
    out = fsck(image)
    assert int(re.search(r"(\d+) sectors total", out).group(1)) > 65535  # type: ignore[union-attr]
    assert extract(image, tmp_path / "out") == files


def test_long_and_unicode_names_survive(tmp_path: Path) -> None:
    files = {
        "A Very Long Directory Name/Ünïcödé file name with spaces.txt": b"1",
        "A Very Long Directory Name/Ünïcödé file name with spaces.dat": b"2",
        "x" * 200: b"3",
        "MixedCase.Efi": b"4",
        "lower.efi": b"5",
    }
    image = write(tmp_path, files)
    fsck(image)
    assert extract(image, tmp_path / "out") == files


def test_label_can_be_empty(tmp_path: Path) -> None:
    listing = mtools("mdir", write(tmp_path, {"A": b"a"}, label=""), "::/")
    assert "has no label" in listing


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"EFI/boot/a": b"", "EFI/BOOT/b": b""}, "clashes with 'boot'"),
        ({"A": b"", "a": b""}, "clashes with 'A'"),
        ({"EFI": b"", "EFI/BOOT": b""}, "clashes with another"),
        ({"EFI/BOOT": b"", "EFI": b""}, "clashes with another"),
        ({"/EFI": b""}, "not empty"),
        ({"a:b": b""}, "FAT file name"),
        ({"trailing.": b""}, "not ending in a dot"),
        ({"x" * 256: b""}, "longer than 255"),
    ],
)
def test_bad_names_are_refused(files: dict[str, bytes], message: str) -> None:
    with pytest.raises(FatError, match=message):
        make_fat_image(files, label="ESP", volume_id=0, mtime=EPOCH)


@pytest.mark.parametrize("label", ["esp", "TWELVE CHARS", "A.B"])
def test_bad_labels_are_refused(label: str) -> None:
    with pytest.raises(FatError, match="volume label"):
        make_fat_image({}, label=label, volume_id=0, mtime=EPOCH)


def test_volume_id_must_fit_32_bits() -> None:
    with pytest.raises(FatError, match="32 bits"):
        make_fat_image({}, label="ESP", volume_id=1 << 32, mtime=EPOCH)


NAME = st.text(alphabet=st.sampled_from("abcXYZ019 ._-~é€"), min_size=1, max_size=20).filter(
    lambda s: s not in (".", "..") and s[-1] not in ". "
)


def consistent(tree: dict[str, bytes]) -> bool:
    """No two paths that FAT would take for the same, and no file also used as a directory."""
    spelled: dict[str, str] = {}
    files = {path.upper() for path in tree}
    for path in tree:
        parts = path.split("/")
        for depth in range(1, len(parts) + 1):
            prefix = "/".join(parts[:depth])
            if spelled.setdefault(prefix.upper(), prefix) != prefix:
                return False
            if depth < len(parts) and prefix.upper() in files:
                return False
    return True


@settings(max_examples=15, deadline=None)
@given(
    tree=st.dictionaries(
        st.lists(NAME, min_size=1, max_size=3).map("/".join),
        st.binary(max_size=5000),
        min_size=1,
        max_size=12,
    ).filter(consistent)
)
def test_any_valid_tree_reads_back_the_same(tree: dict[str, bytes]) -> None:
    data = make_fat_image(tree, label="RANDOM", volume_id=1, mtime=EPOCH)
    with tempfile.TemporaryDirectory() as scratch:
        image = Path(scratch) / "esp.img"
        image.write_bytes(data)
        fsck(image)
        assert extract(image, Path(scratch) / "out") == tree


def test_an_odd_fat12_entry_count_does_not_spill_into_the_root_directory() -> None:
    # 2387 clusters + 2 reserved entries = 2389 entries: 3583.5 bytes, in 7 sectors exactly.
    # The real ESP (shim + GRUB) has this shape; the label entry must survive.
    image = make_fat_image(
        {"EFI/BOOT/BOOTX64.EFI": b"x" * 949_424, "EFI/BOOT/grubx64.efi": b"y" * 3_934_208},
        label="CPUSHARE",
        volume_id=1,
        mtime=1_700_000_000,
    )
    fat_sectors = int.from_bytes(image[22:24], "little")
    root = (1 + 2 * fat_sectors) * 512
    assert image[root : root + 11] == b"CPUSHARE   "


@pytest.mark.parametrize("size", [0, 1, 2047, 2048, 2049, 5_000_000])
def test_cd_sectors_start_every_file_on_a_cd_sector(tmp_path: Path, size: int) -> None:
    # For an ISO's records to point at a file's bytes inside the image (the ESP's kernel,
    # initramfs and order slot), whatever the FAT's other sizes.
    files = {**esp_files(), "live/vmlinuz": b"k" * size, "live/order.img": bytes(65536)}
    image = fat_image(files, label="LIVECD_EFI", volume_id=1, mtime=EPOCH, cd_sectors=True)
    assert len(image.data) % 2048 == 0
    for path, (offset, length) in image.extents.items():
        assert offset % 2048 == 0, path
        assert image.data[offset : offset + length] == files[path], path
    path = tmp_path / "esp.img"
    path.write_bytes(image.data)
    fsck(path)
    assert extract(path, tmp_path / "out") == files


def test_without_cd_sectors_the_image_stays_as_small_as_fits() -> None:
    files = {"EFI/BOOT/BOOTX64.EFI": b"x" * 3000}
    small = fat_image(files, label="ESP", volume_id=1, mtime=EPOCH)
    assert small.data == make_fat_image(files, label="ESP", volume_id=1, mtime=EPOCH)
    aligned = fat_image(files, label="ESP", volume_id=1, mtime=EPOCH, cd_sectors=True)
    assert small.extents["EFI/BOOT/BOOTX64.EFI"][0] % 2048 != 0
    assert len(small.data) < len(aligned.data)
