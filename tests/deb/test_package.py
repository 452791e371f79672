"""The package as files: built twice to the same bytes, read back by dpkg-deb, checked by
lintian, and holding the live CD's own guest package and jail binaries."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from debroot import EPOCH

from livecd.cli import main
from livecd.debpkg.archive import Built, build
from livecd.guest import CPUSHARE_SRC as GUEST_SRC

LIB = "./usr/lib/cpushare"


def dpkg_deb(*args: str) -> str:
    return subprocess.run(["dpkg-deb", *args], capture_output=True, text=True, check=True).stdout


def test_two_builds_give_the_same_bytes_and_the_epoch_is_every_time(
    deb: Built, tmp_path: Path
) -> None:
    again = build(tmp_path, EPOCH)
    assert again.path.read_bytes() == deb.path.read_bytes()
    assert again.path.name == "cpushare_0.1.0_amd64.deb"
    later = build(tmp_path / "later", EPOCH + 86400)
    assert later.sha256 != deb.sha256


def test_dpkg_deb_reads_the_control_fields_and_maintainer_scripts(deb: Built) -> None:
    fields = {
        name: dpkg_deb("-f", str(deb.path), name).strip()
        for name in ("Package", "Architecture", "Depends", "Pre-Depends", "Installed-Size")
    }
    assert fields["Package"] == "cpushare" and fields["Architecture"] == "amd64"
    assert fields["Depends"] == "adduser, python3 (>= 3.11)"
    assert int(fields["Installed-Size"]) > 100
    info = dpkg_deb("-I", str(deb.path))
    for script in ("postinst", "prerm", "postrm"):
        assert f" {script} " in info
    control = subprocess.run(
        ["dpkg-deb", "--ctrl-tarfile", str(deb.path)], capture_output=True, check=True
    ).stdout
    listing = subprocess.run(
        ["tar", "-tvf", "-"], input=control, capture_output=True, check=True
    ).stdout.decode()
    assert "./conffiles" in listing and "./md5sums" in listing


def test_contents_are_the_live_cds_guest_package_owned_by_root_at_the_epoch(
    deb: Built, tmp_path: Path
) -> None:
    lines = dpkg_deb("-c", str(deb.path)).splitlines()
    assert all(" root/root " in line and " 2023-11-14 22:13 " in line for line in lines)
    paths = {line.split()[-1] for line in lines}
    expected = {
        "./etc/cpushare/", "./etc/init.d/cpushare", "./lib/systemd/system/cpushare.service",
        f"{LIB}/jail-loader", f"{LIB}/selftest.job", f"{LIB}/sellers",
        f"{LIB}/cpushare/seller/fleet.py", f"{LIB}/cpushare/packaged.py",
        "./usr/share/doc/cpushare/copyright", "./usr/share/doc/cpushare/changelog.gz",
    }  # fmt: skip
    assert expected <= paths
    subprocess.run(["dpkg-deb", "-x", str(deb.path), str(tmp_path)], check=True)
    for source in GUEST_SRC.rglob("*.py"):
        installed = tmp_path / "usr/lib/cpushare/cpushare" / source.relative_to(GUEST_SRC)
        assert installed.read_bytes() == source.read_bytes(), source
    kind = subprocess.run(
        ["file", "-b", str(tmp_path / "usr/lib/cpushare/jail-loader")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "x86-64" in kind and "statically linked" in kind
    assert kind.rstrip().endswith(", stripped"), kind


@pytest.mark.skipif(shutil.which("lintian") is None, reason="lintian is not installed")
def test_lintian_reports_no_error_and_no_warning(deb: Built) -> None:
    report = subprocess.run(
        ["lintian", "--fail-on", "none", str(deb.path)], capture_output=True, text=True
    )
    tags = [line for line in report.stdout.splitlines() if line[:2] in ("E:", "W:")]
    assert report.returncode == 0 and tags == [], report.stdout + report.stderr


def test_the_command_line_writes_the_package_into_the_directory(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["deb", "-o", str(tmp_path), "--source-date-epoch", str(EPOCH)]
    )
    assert result.exit_code == 0, result.output
    written = tmp_path / "cpushare_0.1.0_amd64.deb"
    assert str(written) in result.output and "sha256" in result.output
    assert written.is_file()
