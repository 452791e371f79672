"""Reproducible builds: the same inputs and SOURCE_DATE_EPOCH give the same bytes, whatever
the directory, time zone, umask and locale; one test per source of non-determinism."""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pycdlib.pycdlib
import pytest
from click.testing import CliRunner

from diskformats.compress import compress
from diskformats.cpio import Entry, tree_entries, write_newc
from diskformats.fat import fat_image, make_fat_image
from diskformats.iso import Inside, IsoFile, write_iso
from diskformats.isoread import inspect_iso
from livecd.build import BuildResult, source_date_epoch
from livecd.cli import main
from livecd.files import cache_home
from livecd.stage1 import IMAGE
from livecd.verify import iso_differences

ISOLINUX = Path("/usr/lib/ISOLINUX/isolinux.bin")  # Debian package isolinux
LIVECD = Path(sys.executable).with_name("livecd")
EPOCH = 1_700_000_000  # the default_build fixture's
EPOCH_UTC = "2023-11-14T22:13:20Z"


def small_iso_files() -> list[IsoFile]:
    esp = fat_image({"EFI/BOOT/BOOTX64.EFI": b"shim" * 1000, "live/vmlinuz": b"linux" * 999},
                    label="ESP", volume_id=7, mtime=EPOCH, cd_sectors=True)  # fmt: skip
    return [
        IsoFile("isolinux/isolinux.bin", source=ISOLINUX),
        IsoFile("boot/efi.img", data=esp.data),
        IsoFile("live/initrd.img", data=b"initramfs" * 999),
        IsoFile("live/vmlinuz", inside=Inside("boot/efi.img", *esp.extents["live/vmlinuz"])),
        IsoFile("isolinux/isolinux.cfg", data=b"DEFAULT live\n"),
        IsoFile("manifest.json", data=b"{}\n"),
    ]


def write_small_iso(out: Path, files: list[IsoFile], *, seed: bytes = b"s") -> bytes:
    write_iso(files, out, label="TEST", bios_boot="isolinux/isolinux.bin",
              efi_image="boot/efi.img", epoch=EPOCH, seed=seed)  # fmt: skip
    return out.read_bytes()


@pytest.fixture
def time_zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """Sets TZ for this process (and tzset), restoring it afterwards."""

    def set_zone(zone: str) -> None:
        monkeypatch.setenv("TZ", zone)
        time.tzset()

    yield set_zone
    monkeypatch.undo()
    time.tzset()


def bsdtar_mtimes(archive: Path | bytes) -> dict[str, int]:
    """Each member's mtime as libarchive reads it (an ISO's Rock Ridge times, a cpio's)."""
    source = "-" if isinstance(archive, bytes) else str(archive)
    proc = subprocess.run(
        ["bsdtar", "-cf", "-", "--format=pax", f"@{source}"],
        input=archive if isinstance(archive, bytes) else None,
        capture_output=True,
        check=True,
    )
    with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as tar:
        return {m.name: int(m.mtime) for m in tar.getmembers()}


# pycdlib stamps the wall clock, in local time, into every volume descriptor and record.


def test_iso_dates_are_the_epoch_in_utc_in_any_time_zone(
    tmp_path: Path, time_zone: Callable[[str], None]
) -> None:
    images = []
    for i, zone in enumerate(["Pacific/Kiritimati", "America/Los_Angeles", "UTC"]):
        time_zone(zone)
        images.append(write_small_iso(tmp_path / f"{i}.iso", small_iso_files()))
    assert images[0] == images[1] == images[2]
    assert inspect_iso(tmp_path / "0.iso").volume.created == EPOCH_UTC
    pvd = subprocess.run(["xorriso", "-indev", str(tmp_path / "0.iso"), "-pvd_info"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert "Creation Time: 2023111422132000" in pvd and "Modif. Time  : 2023111422132000" in pvd
    mtimes = bsdtar_mtimes(tmp_path / "0.iso")
    assert mtimes and set(mtimes.values()) == {EPOCH}, mtimes


def test_the_clock_adapter_leaves_pycdlib_as_it_found_it(tmp_path: Path) -> None:
    write_small_iso(tmp_path / "a.iso", small_iso_files())
    assert pycdlib.pycdlib.time is time
    assert pycdlib.isohybrid.uuid.uuid4().version == 4  # type: ignore[attr-defined]


# pycdlib draws the MBR id and GPT GUIDs at random unless given.


def test_mbr_id_and_gpt_guids_come_from_the_seed(tmp_path: Path) -> None:
    a1 = write_small_iso(tmp_path / "a1.iso", small_iso_files(), seed=b"first")
    a2 = write_small_iso(tmp_path / "a2.iso", small_iso_files(), seed=b"first")
    write_small_iso(tmp_path / "b.iso", small_iso_files(), seed=b"second")
    assert a1 == a2
    first, second = inspect_iso(tmp_path / "a1.iso"), inspect_iso(tmp_path / "b.iso")
    assert first.gpt is not None and second.gpt is not None
    assert first.mbr_disk_id != second.mbr_disk_id
    assert first.gpt.disk_guid != second.gpt.disk_guid
    guids = {p.guid for p in first.gpt.partitions} | {p.guid for p in second.gpt.partitions}
    assert len(guids) == len(first.gpt.partitions) + len(second.gpt.partitions)
    assert first.gpt.backup == "ok" and first.gpt.header_crc_ok


# Files come from directory listings and dicts, whose order is the file system's.


def test_iso_file_order_does_not_matter(tmp_path: Path) -> None:
    files = small_iso_files()
    ordered = write_small_iso(tmp_path / "a.iso", files)
    assert write_small_iso(tmp_path / "b.iso", files[::-1]) == ordered
    assert (
        write_small_iso(tmp_path / "c.iso", random.Random(1).sample(files, len(files))) == ordered
    )


def test_cpio_member_order_does_not_matter() -> None:
    entries = [Entry(path=f"d{i % 3}/f{i}", mode=0o100644, data=b"x" * i) for i in range(30)]
    out_a, out_b = io.BytesIO(), io.BytesIO()
    write_newc(entries, out_a, mtime=EPOCH)
    write_newc(random.Random(2).sample(entries, len(entries)), out_b, mtime=EPOCH)
    assert out_a.getvalue() == out_b.getvalue()


def test_fat_file_order_does_not_matter() -> None:
    files = {f"EFI/D{i % 2}/F{i}.EFI": bytes([i]) * 3000 for i in range(8)}
    ordered = make_fat_image(files, label="ESP", volume_id=1, mtime=EPOCH)
    shuffled = dict(random.Random(3).sample(sorted(files.items()), len(files)))
    assert make_fat_image(shuffled, label="ESP", volume_id=1, mtime=EPOCH) == ordered


# Files on disk carry their own mtimes, owners and the umask of whoever unpacked them.


def test_cpio_times_and_owners_are_fixed_whatever_the_files_say(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    for i, name in enumerate(["etc/a", "etc/b", "init"]):
        path = tree / name
        path.write_text(name)
        os.utime(path, (1_000_000 + i, 1_000_000 + i))
        if os.geteuid() == 0:
            os.chown(path, 1000 + i, 2000 + i)
    buf = io.BytesIO()
    write_newc(tree_entries(tree), buf, mtime=EPOCH)
    assert set(bsdtar_mtimes(buf.getvalue()).values()) == {EPOCH}
    listing = subprocess.run(["bsdtar", "-tvf", "-", "--numeric-owner"], input=buf.getvalue(),
                             capture_output=True, check=True).stdout.decode()  # fmt: skip
    owners = {tuple(line.split()[2:4]) for line in listing.splitlines()}
    assert owners == {("0", "0")}, listing


# zstd reads its thread count and level from the environment.


def test_zstd_output_ignores_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(4)
    data = b"".join(rng.choice([b"cpushare ", b"jail ", rng.randbytes(7)]) for _ in range(1 << 20))
    plain = compress(data, "zstd", 3)
    monkeypatch.setenv("ZSTD_NBTHREADS", "2")
    monkeypatch.setenv("ZSTD_CLEVEL", "1")
    assert compress(data, "zstd", 3) == plain


# marshal marks objects shared by their reference count in the compiling process.

COMPILE_MODULES = """
import hashlib, sys
from pathlib import Path
if sys.argv[1] == "busy":
    import ast, ntpath, pathlib, pytest  # objects the modules below share, referenced more
from diskformats.cpio import Entry
from livecd.pyc import compiled
from livecd.python_runtime import STDLIB
for name in ("ast", "ntpath", "pathlib"):
    source = Path(sys.base_prefix, "lib", "python3.11", f"{name}.py")
    entry = Entry(f"{STDLIB}/{name}.py", 0o100644, source=source)
    (pyc,) = compiled([entry], Path(sys.argv[2]))
    print(name, hashlib.sha256(pyc.source.read_bytes()).hexdigest())
"""


def test_pyc_bytes_do_not_depend_on_what_the_compiler_imported(tmp_path: Path) -> None:
    def compile_in(state: str) -> str:
        argv = [sys.executable, "-c", COMPILE_MODULES, state, str(tmp_path / state)]
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout

    quiet = compile_in("quiet")
    assert quiet.count("\n") == 3
    assert compile_in("busy") == quiet


# SOURCE_DATE_EPOCH: given, from the environment, or the last commit's time.


def test_a_plain_build_takes_the_last_commits_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    repo = Path(__file__).resolve().parents[2]
    commit = subprocess.run(["git", "-C", str(repo), "log", "-1", "--format=%ct"],
                            capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert source_date_epoch(None) == int(commit)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1234")
    assert source_date_epoch(None) == 1234
    assert source_date_epoch(99) == 99


@pytest.mark.parametrize("value", ["1700000000.5", "", "0x10", "yesterday"])
def test_source_date_epoch_not_an_integer_is_one_line(tmp_path: Path, value: str) -> None:
    result = CliRunner().invoke(main, ["build", "-o", str(tmp_path / "t.iso")],
                                env={"SOURCE_DATE_EPOCH": value})  # fmt: skip
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert errors == [
        f"livecd: error: SOURCE_DATE_EPOCH={value!r} is not an integer: "
        "set it to seconds since 1970"
    ]
    assert list(tmp_path.iterdir()) == []


# Whole builds.


def extract(iso: Path, path: str, dest: Path) -> bytes:
    subprocess.run(["xorriso", "-osirrox", "on", "-indev", str(iso), "-extract", path, str(dest)],
                   capture_output=True, check=True)  # fmt: skip
    return dest.read_bytes()


def run_build(cwd: Path, output: str, *, env: dict[str, str], umask: int, cache: Path) -> Path:
    cwd.mkdir(parents=True)
    proc = subprocess.run(
        [str(LIVECD), "build", "-o", output, "--timeout", "0", "--cache", str(cache)],
        cwd=cwd,
        env={k: v for k, v in os.environ.items() if k not in ("TZ", "LC_ALL", "LANG")} | env,
        umask=umask,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    return cwd / output


def fresh_cache(tmp_path: Path) -> Path:
    """A cache that shares the downloaded packages and apt lists but nothing unpacked or
    compressed: the second build unpacks and compresses again, under its own umask."""
    cache = tmp_path / "cache"
    cache.mkdir()
    for shared in ("debs", "apt"):
        (cache / shared).symlink_to(cache_home() / shared)
    return cache


def test_two_builds_in_different_places_and_environments_are_identical(
    tmp_path: Path, default_build: BuildResult
) -> None:
    first = run_build(
        tmp_path / "a", "first.iso", umask=0o022, cache=cache_home(),
        env={"TZ": "UTC", "LC_ALL": "C.UTF-8", "SOURCE_DATE_EPOCH": str(EPOCH)},
    )  # fmt: skip
    second = run_build(
        tmp_path / "b" / "deeper" / "still", "second.iso", umask=0o077,
        cache=fresh_cache(tmp_path),
        env={"TZ": "Pacific/Kiritimati", "LC_ALL": "C", "SOURCE_DATE_EPOCH": str(EPOCH)},
    )  # fmt: skip
    digests = {hashlib.sha256(p.read_bytes()).hexdigest() for p in (first, second)}
    assert len(digests) == 1, "\n".join(iso_differences(first, second))
    assert digests == {default_build.sha256}, "\n".join(iso_differences(first, default_build.iso))
    images = {}
    for inside in ("live/initrd.img", "boot/efi.img"):
        images[inside] = extract(first, "/" + inside, tmp_path / "a.img")
        assert extract(second, "/" + inside, tmp_path / "b.img") == images[inside], inside
    manifest = json.loads(first.with_name("first.iso.manifest.json").read_text())
    assert manifest["initramfs"]["sha256"] == hashlib.sha256(images["live/initrd.img"]).hexdigest()


def test_nothing_of_the_build_host_leaks_into_the_image(
    default_build: BuildResult, initramfs_parts: tuple[bytes, bytes], tmp_path: Path
) -> None:
    iso = default_build.iso.read_bytes()
    first_stage, archive = initramfs_parts
    subprocess.run(["bsdtar", "-xf", "-", "-C", str(tmp_path)], input=archive, check=True)
    live = tmp_path / "live"
    subprocess.run(["unsquashfs", "-q", "-n", "-d", str(live), str(tmp_path / IMAGE)], check=True)
    initramfs = first_stage + b"".join(
        p.read_bytes() for p in sorted(live.rglob("*")) if p.is_file() and not p.is_symlink()
    )
    for leak in (str(default_build.iso.parent), str(cache_home()), str(Path.cwd())):
        assert leak.encode() not in iso and leak.encode() not in initramfs, leak
