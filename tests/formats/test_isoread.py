"""`livecd inspect`, checked against xorriso and bsdtar reading the same ISO."""

from __future__ import annotations

import io
import json
import re
import subprocess
import uuid
from pathlib import Path

import pycdlib
import pytest
from click.testing import CliRunner

from diskformats.fat import make_fat_image
from diskformats.isoread import IsoReport, inspect_iso
from livecd.cli import main

ISOLINUX = Path("/usr/lib/ISOLINUX/isolinux.bin")  # Debian package isolinux
MANIFEST = {"name": "test", "inputs": [{"package": "busybox-static", "sha256": "00" * 32}]}


def add(iso: pycdlib.PyCdlib, path: str, data: bytes) -> None:
    iso_path = "/" + "/".join(part.upper().replace("-", "_") for part in path.split("/"))
    iso.add_fp(
        io.BytesIO(data), len(data), iso_path + ";1", rr_name=path.split("/")[-1],
        joliet_path="/" + path,
    )  # fmt: skip


def make_hybrid_iso(out: Path, *, manifest: bytes | None) -> None:
    """A small ISO shaped like the builder's: ISOLINUX for BIOS, an ESP for EFI, isohybrid."""
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, sys_ident="LINUX", vol_ident="CPUSHARE_TEST",
            rock_ridge="1.09", joliet=3)  # fmt: skip
    iso.add_directory("/ISOLINUX", rr_name="isolinux", joliet_path="/isolinux")
    iso.add_directory("/BOOT", rr_name="boot", joliet_path="/boot")
    add(iso, "isolinux/isolinux.bin", ISOLINUX.read_bytes())
    esp = make_fat_image({"EFI/BOOT/BOOTX64.EFI": b"x" * 300_000}, label="ESP", volume_id=1,
                         mtime=0)  # fmt: skip
    add(iso, "boot/esp.img", esp)
    add(iso, "boot/vmlinuz", b"k" * 1_000_000)
    add(iso, "boot/initrd.img", b"i" * 700_000)
    if manifest is not None:
        add(iso, "manifest.json", manifest)
    iso.add_eltorito("/ISOLINUX/ISOLINUX.BIN;1", bootcatfile="/ISOLINUX/BOOT.CAT;1",
                     rr_bootcatname="boot.cat", joliet_bootcatfile="/isolinux/boot.cat",
                     boot_load_size=4, boot_info_table=True)  # fmt: skip
    iso.add_eltorito("/BOOT/ESP.IMG;1", efi=True, platform_id=0xEF)
    iso.add_isohybrid(efi=True, mbr_id=0x0BADCAFE)
    iso.write(str(out))
    iso.close()


@pytest.fixture(scope="module")
def hybrid_iso(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not ISOLINUX.exists():
        pytest.fail(f"{ISOLINUX} is missing: run scripts/install-host-packages.sh")
    out = tmp_path_factory.mktemp("iso") / "test.iso"
    make_hybrid_iso(out, manifest=json.dumps(MANIFEST).encode())
    return out


@pytest.fixture(scope="module")
def report(hybrid_iso: Path) -> IsoReport:
    return inspect_iso(hybrid_iso)


def xorriso(iso: Path, *commands: str) -> dict[str, list[list[str]]]:
    """xorriso's report lines, by their label (the text before ':'), split into fields."""
    proc = subprocess.run(
        ["xorriso", "-indev", str(iso), *commands], capture_output=True, text=True, check=True
    )
    table: dict[str, list[list[str]]] = {}
    for line in proc.stdout.splitlines():
        label, sep, value = line.partition(": ")
        if sep:
            table.setdefault(label.strip(), []).append(value.split())
    return table


def test_volume_matches_xorriso_pvd_info(hybrid_iso: Path, report: IsoReport) -> None:
    pvd = xorriso(hybrid_iso, "-pvd_info")
    assert [report.volume.label] == pvd["Volume Id"][0]
    assert [report.volume.system_id] == pvd["System Id"][0]
    created = pvd["Creation Time"][0][0]  # YYYYMMDDhhmmsscc
    assert re.sub(r"\D", "", report.volume.created)[:14] == created[:14]
    assert report.volume.rock_ridge == "1.09"
    assert report.volume.joliet_level == 3
    assert report.volume.blocks * 2048 <= report.file_size


def test_el_torito_entries_match_xorriso(hybrid_iso: Path, report: IsoReport) -> None:
    x = xorriso(hybrid_iso, "-report_el_torito", "plain")
    assert [report.boot_catalog] == x["El Torito cat path"][0]
    imgs = x["El Torito boot img"]
    assert [
        [str(n), e.platform.replace("EFI", "UEFI"), "y" if e.bootable else "n", e.emulation,
         f"{e.load_segment:#06x}", str(e.load_sectors), str(e.lba)]
        for n, e in enumerate(report.boot_entries, start=1)
    ] == [[row[0], row[1], row[2], row[3], row[4], row[6], row[7]] for row in imgs]  # fmt: skip
    assert [[str(n), e.path] for n, e in enumerate(report.boot_entries, start=1)] == x[
        "El Torito img path"
    ]
    assert [e.platform for e in report.boot_entries] == ["BIOS", "EFI"]


def test_mbr_partitions_match_xorriso(hybrid_iso: Path, report: IsoReport) -> None:
    x = xorriso(hybrid_iso, "-report_system_area", "plain")
    assert [
        [str(p.number), "0x80" if p.bootable else "0x00", f"{p.type:#04x}", str(p.start),
         str(p.sectors)]
        for p in report.mbr_partitions
    ] == x["MBR partition"]  # fmt: skip
    assert [[str(p.number), p.path] for p in report.mbr_partitions if p.path] == x[
        "MBR partition path"
    ]
    assert report.mbr_disk_id == 0x0BADCAFE


def test_gpt_matches_xorriso(hybrid_iso: Path, report: IsoReport) -> None:
    x = xorriso(hybrid_iso, "-report_system_area", "plain")
    gpt = report.gpt
    assert gpt is not None
    # xorriso prints GUIDs as their bytes on disk.
    assert uuid.UUID(gpt.disk_guid).bytes_le.hex() == x["GPT disk GUID"][0][0]
    assert [[str(p.number), uuid.UUID(p.type_guid).bytes_le.hex()] for p in gpt.partitions] == (
        x["GPT type GUID"]
    )
    assert [[str(p.number), str(p.first_lba), str(p.last_lba - p.first_lba + 1)]
            for p in gpt.partitions] == x["GPT start and size"]  # fmt: skip
    assert [[str(p.number), *p.name.split()] for p in gpt.partitions] == x["GPT partname local"]
    assert gpt.entries_crc_ok == ("GPT array CRC wrong" not in x)
    assert (gpt.backup == "ok") == ("GPT backup problems" not in x)


def test_files_and_sizes_match_bsdtar(hybrid_iso: Path, report: IsoReport) -> None:
    listing = subprocess.run(
        ["bsdtar", "-tvf", str(hybrid_iso)], capture_output=True, text=True, check=True
    ).stdout
    expected = {
        "/" + line.split()[-1]: int(line.split()[4])
        for line in listing.splitlines()
        if line.startswith("-")
    }
    assert {f.path: f.size for f in report.files if not f.is_dir} == expected


def test_manifest_is_read(report: IsoReport) -> None:
    assert report.manifest == MANIFEST
    assert report.manifest_error is None


def run_cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["inspect", *args])
    return result.exit_code, result.stdout, result.stderr


def test_cli_text_shows_boot_partitions_largest_files_and_manifest(hybrid_iso: Path) -> None:
    code, out, _ = run_cli(str(hybrid_iso))
    assert code == 0
    assert "'CPUSHARE_TEST'" in out
    assert re.search(r"1  BIOS\s+bootable .* /isolinux/isolinux.bin", out)
    assert re.search(r"2  EFI\s+bootable .* /boot/esp.img", out)
    assert re.search(r"type 0xef EFI System .* /boot/esp.img", out)
    assert "disk id 0x0badcafe" in out
    assert re.search(r"Largest\n\s+976.6 KiB  /boot/vmlinuz\n\s+683.6 KiB  /boot/initrd.img", out)
    assert re.search(r"1.9 MiB  /boot/", out)  # top-level summary
    assert "inside another file" not in out  # every file has its own extent
    assert '"package": "busybox-static"' in out


def test_cli_files_lists_every_file(hybrid_iso: Path) -> None:
    code, out, _ = run_cli(str(hybrid_iso), "--files")
    assert code == 0
    listed = re.findall(r"^\s+\S+ \S+  (/\S+)$", out, re.MULTILINE)
    assert listed == sorted(listed)
    assert set(listed) >= {"/boot/esp.img", "/isolinux/boot.cat", "/manifest.json"}


def test_cli_json_round_trips(hybrid_iso: Path, report: IsoReport) -> None:
    code, out, _ = run_cli(str(hybrid_iso), "--json")
    assert code == 0
    data = json.loads(out)
    assert data["boot_entries"][1]["path"] == "/boot/esp.img"
    assert data["manifest"] == MANIFEST
    assert data["volume"]["label"] == report.volume.label


def test_plain_iso_has_no_boot_records(tmp_path: Path) -> None:
    iso = pycdlib.PyCdlib()
    iso.new(vol_ident="PLAIN")
    iso.add_fp(io.BytesIO(b"hello"), 5, "/HELLO.TXT;1")
    iso.write(str(tmp_path / "plain.iso"))
    iso.close()
    plain = inspect_iso(tmp_path / "plain.iso")
    assert (plain.boot_entries, plain.mbr_partitions, plain.gpt) == ([], [], None)
    assert [(f.path, f.size) for f in plain.files] == [("/HELLO.TXT", 5)]
    assert plain.volume.rock_ridge is None and plain.volume.joliet_level is None
    code, out, _ = run_cli(str(tmp_path / "plain.iso"))
    assert code == 0
    assert "El Torito  none" in out and "MBR        none" in out and "GPT        none" in out


def test_bad_manifest_is_reported_not_fatal(tmp_path: Path) -> None:
    make_hybrid_iso(tmp_path / "bad.iso", manifest=b"{not json")
    bad = inspect_iso(tmp_path / "bad.iso")
    assert bad.manifest is None
    assert bad.manifest_error and "not valid JSON" in bad.manifest_error


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: None, "no such file"),
        (lambda p: p.mkdir(), "cannot read it"),
        (lambda p: p.write_text("hello\n"), "not an ISO 9660 image"),
    ],
)
def test_bad_input_gives_one_line_and_exit_2(tmp_path: Path, make: object, message: str) -> None:
    target = tmp_path / "x.iso"
    make(target)  # type: ignore[operator]
    code, out, err = run_cli(str(target))
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("livecd: error: ") and message in err


def test_truncated_iso_gives_one_line(tmp_path: Path, hybrid_iso: Path) -> None:
    target = tmp_path / "cut.iso"
    target.write_bytes(hybrid_iso.read_bytes()[: 17 * 2048])
    code, _, err = run_cli(str(target))
    assert code == 2
    assert err.count("\n") == 1 and "not a readable ISO 9660 image" in err
