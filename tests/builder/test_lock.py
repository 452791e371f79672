"""Lock files: `livecd lock`, `livecd build --lock`, `livecd verify`, and bad locks."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pycdlib
import pytest
from click.testing import CliRunner, Result

from livecd.build import BuildOptions, BuildResult, build
from livecd.cli import main
from livecd.debian import Apt, Package
from livecd.files import cache_home
from livecd.lock import dump_lock, make_lock, parse_lock, read_lock, write_lock
from livecd.profile import DEFAULT_PROFILE, load_profile
from livecd.rootfs import OVERLAYS
from livecd.verify import built_profile

EPOCH = 1_700_000_000  # the default_build fixture's


def livecd(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def error_lines(result: Result) -> list[str]:
    assert "Traceback" not in result.output
    return [line for line in result.stderr.splitlines() if line.startswith("livecd: error:")]


def pinned(packages: list[Package]) -> list[tuple[str, str, str, int]]:
    return [(p.name, p.version, p.sha256, p.size) for p in packages]


@pytest.fixture
def lock_file(default_build: BuildResult, tmp_path: Path) -> Path:
    """The lock of the packages the default build resolved to."""
    path = tmp_path / "default.lock.json"
    write_lock(make_lock(load_profile(), default_build.packages), path)
    return path


def edited(lock_file: Path, edit: Callable[[dict[str, Any]], object]) -> Path:
    document = json.loads(lock_file.read_text())
    edit(document)
    lock_file.write_text(json.dumps(document))
    return lock_file


def test_a_lock_reads_back_as_written(default_build: BuildResult, tmp_path: Path) -> None:
    lock = make_lock(load_profile(), default_build.packages)
    again = parse_lock(dump_lock(lock), tmp_path / "x")
    assert pinned(list(again.packages)) == pinned(default_build.packages)
    assert again == lock
    assert dump_lock(again) == dump_lock(lock)
    # A package of another suite keeps it: the lock matches the profile and fetches it.
    assert "systemd-boot-efi-amd64-signed/trixie" in [p.spec for p in again.packages]


def test_livecd_lock_pins_the_current_resolution(
    default_build: BuildResult, tmp_path: Path
) -> None:
    out = tmp_path / "pinned.json"
    result = livecd("lock", "-o", str(out))
    assert result.exit_code == 0, result.output
    lock = read_lock(out)
    assert pinned(list(lock.packages)) == pinned(default_build.packages)
    assert lock.packages[0].name.startswith("linux-image-6")
    boot = next(p for p in lock.packages if p.name == "systemd-boot-efi-amd64-signed")
    assert boot.suite == "trixie"
    # The manifest says which suite a package of another suite came from.
    listed = default_build.manifest["packages"]  # type: ignore[index]
    assert [p.get("suite", "") for p in listed] == [p.suite for p in lock.packages]  # type: ignore[attr-defined]
    assert [p["sha256"] for p in default_build.manifest["packages"]] == [  # type: ignore[attr-defined]
        p.sha256 for p in lock.packages
    ]
    assert lock.profile_sha256 == default_build.manifest["profile"]["sha256"]  # type: ignore[index]
    assert [p.name for p in tmp_path.iterdir()] == ["pinned.json"]


def test_a_build_from_the_lock_is_the_same_iso(
    default_build: BuildResult, lock_file: Path, tmp_path: Path
) -> None:
    profile = load_profile().with_overrides(timeout=0)
    opts = BuildOptions(profile=profile, output=tmp_path / "l.iso", source_date_epoch=EPOCH,
                        lock=lock_file)  # fmt: skip
    assert build(opts).sha256 == default_build.sha256


def test_a_build_uses_the_locked_version_not_todays(
    default_build: BuildResult, lock_file: Path, tmp_path: Path
) -> None:
    # Pin a version of zlib1g other than the one resolution picks today (the suite lists
    # an older one beside its update): the image must carry it.
    apt = Apt(cache_home(), "bookworm")
    today = next(p for p in default_build.packages if p.name == "zlib1g")
    other = next(p for p in apt.versions("zlib1g") if p.version != today.version)

    def pin_other(doc: dict[str, Any]) -> None:
        entry = next(p for p in doc["packages"] if p["name"] == "zlib1g")
        entry.update(version=other.version, sha256=other.sha256, size=other.size)

    profile = load_profile().with_overrides(timeout=0)
    opts = BuildOptions(profile=profile, output=tmp_path / "o.iso", source_date_epoch=EPOCH,
                        lock=edited(lock_file, pin_other))  # fmt: skip
    result = build(opts)
    used = next(p for p in result.packages if p.name == "zlib1g")
    assert (used.version, used.sha256) == (other.version, other.sha256)
    listed = {p["name"]: p for p in result.manifest["packages"]}  # type: ignore[attr-defined]
    assert listed["zlib1g"]["sha256"] == other.sha256
    assert result.sha256 != default_build.sha256


def test_a_tampered_sha256_fails_with_one_line(lock_file: Path, tmp_path: Path) -> None:
    def tamper(doc: dict[str, Any]) -> None:
        isolinux = next(p for p in doc["packages"] if p["name"] == "isolinux")
        isolinux["sha256"] = "0" * 64

    result = livecd(
        "build", "--lock", str(edited(lock_file, tamper)), "-o", str(tmp_path / "t.iso")
    )
    assert result.exit_code == 2
    (line,) = error_lines(result)
    assert "isolinux" in line and "0" * 64 in line and "altered" in line and "livecd lock" in line
    assert not (tmp_path / "t.iso").exists()


def test_a_tampered_sha256_of_another_suites_package_fails_too(
    lock_file: Path, tmp_path: Path
) -> None:
    # The ESP's systemd-boot comes from Debian 13: its sha256 is checked against that
    # suite's index.
    def tamper(doc: dict[str, Any]) -> None:
        boot = next(p for p in doc["packages"] if p["name"] == "systemd-boot-efi-amd64-signed")
        assert boot["suite"] == "trixie"
        boot["sha256"] = "1" * 64

    result = livecd(
        "build", "--lock", str(edited(lock_file, tamper)), "-o", str(tmp_path / "t.iso")
    )
    assert result.exit_code == 2
    (line,) = error_lines(result)
    assert "systemd-boot-efi-amd64-signed" in line and "1" * 64 in line and "altered" in line


def test_a_package_that_can_no_longer_be_had_is_named(lock_file: Path, tmp_path: Path) -> None:
    def age(doc: dict[str, Any]) -> None:
        busybox = next(p for p in doc["packages"] if p["name"] == "busybox-static")
        busybox.update(version="1:0.1-1", sha256="ab" * 32)

    result = livecd("build", "--lock", str(edited(lock_file, age)), "-o", str(tmp_path / "t.iso"))
    assert result.exit_code == 2
    (line,) = error_lines(result)
    assert "busybox-static 1:0.1-1" in line and "no longer be had" in line
    (listed,) = Apt(cache_home(), "bookworm").versions("busybox-static")
    assert f"the mirrors list {listed.version}" in line
    assert "run `livecd lock`" in line
    assert not (tmp_path / "t.iso").exists()


MALFORMED = [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", 'no "format": "livecd-lock"'),
    (b'{"format": "livecd-lock", "version": 7}', "lock version 7 is not"),
    (b"\xff\xfe", "not valid JSON"),
]


@pytest.mark.parametrize(("content", "message"), MALFORMED)
def test_a_malformed_lock_is_one_line(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.lock.json"
    path.write_bytes(content)
    result = livecd("build", "--lock", str(path), "-o", str(tmp_path / "t.iso"))
    assert result.exit_code == 2
    (line,) = error_lines(result)
    assert line.startswith(f"livecd: error: {path}: ") and message in line, line
    assert "livecd lock" in line
    assert not (tmp_path / "t.iso").exists()


BROKEN_FIELDS: list[tuple[Callable[[dict[str, Any]], object], str]] = [
    (lambda d: d.pop("suite"), "suite is missing"),
    (lambda d: d.update(kernel=5), "kernel must be a string, not 5"),
    (lambda d: d["profile"].update(sha256="xyz"), "profile.sha256 'xyz' is not 64"),
    (lambda d: d["packages"][1].update(size=-1), "packages[1].size -1 is negative"),
    (lambda d: d["packages"][2].update(version="1 2"), "packages[2].version '1 2' is not"),
    (lambda d: d["packages"][3].update(name="Bad_Name"), "packages[3].name 'Bad_Name'"),
    (lambda d: d["packages"].append(d["packages"][1]), "busybox-static is locked twice"),
    (lambda d: d.update(packages=[]), "packages must be a non-empty list"),
    (lambda d: d["packages"].__setitem__(0, "linux"), "packages[0] must be an object"),
]


@pytest.mark.parametrize(("edit", "message"), BROKEN_FIELDS)
def test_a_broken_field_is_named(
    lock_file: Path, edit: Callable[[dict[str, Any]], object], message: str
) -> None:
    result = livecd("build", "--lock", str(edited(lock_file, edit)))
    assert result.exit_code == 2
    (line,) = error_lines(result)
    assert line.startswith(f"livecd: error: {lock_file}: ") and message in line, line


def test_every_problem_gets_its_own_line(lock_file: Path) -> None:
    def break_three(doc: dict[str, Any]) -> None:
        doc.pop("suite")
        doc["packages"][0]["sha256"] = "no"
        doc["packages"][1].pop("size")

    result = livecd("build", "--lock", str(edited(lock_file, break_three)))
    assert result.exit_code == 2
    assert len(error_lines(result)) == 3, result.stderr


MISMATCHES: list[tuple[Callable[[dict[str, Any]], object], str]] = [
    (lambda d: d.update(suite="trixie"), "suite 'trixie' is not the profile's 'bookworm'"),
    (lambda d: d["packages"].pop(2), "isolinux not in the lock"),
    (lambda d: d["packages"].append({**d["packages"][1], "name": "bash"}), "bash locked but not"),
    (lambda d: d["packages"].insert(1, d["packages"].pop(2)), "not in the profile's order"),
    (lambda d: d["profile"].update(sha256="1" * 64), "made from another version of"),
]


@pytest.mark.parametrize(("edit", "message"), MISMATCHES)
def test_a_lock_of_another_profile_is_refused(
    lock_file: Path, edit: Callable[[dict[str, Any]], object], message: str
) -> None:
    result = livecd("build", "--lock", str(edited(lock_file, edit)))
    assert result.exit_code == 2
    (line,) = error_lines(result)
    assert message in line and "livecd lock --profile" in line, line


def test_an_edited_profile_needs_a_new_lock(lock_file: Path, tmp_path: Path) -> None:
    profile = tmp_path / "edited.toml"
    profile.write_text(DEFAULT_PROFILE.read_text() + "# one more comment\n")
    shutil.copy(DEFAULT_PROFILE.with_name("libcaca.cpu"), tmp_path)
    result = livecd("build", "--profile", str(profile), "--lock", str(lock_file))
    (line,) = error_lines(result)
    assert f"made from another version of {profile}" in line


def test_a_missing_lock_file_is_one_line(tmp_path: Path) -> None:
    result = livecd("build", "--lock", str(tmp_path / "nope.json"))
    (line,) = error_lines(result)
    assert "no such lock file" in line and "livecd lock -o" in line


# livecd verify


def test_the_manifest_carries_what_a_rebuild_needs(default_build: BuildResult) -> None:
    manifest: Any = default_build.manifest
    assert manifest["source_date_epoch"] == EPOCH
    assert all(len(order["sha256"]) == 64 for order in manifest["orders"])
    assert manifest["builder"].startswith("livecd ")
    profile = load_profile().with_overrides(timeout=0)
    assert built_profile(load_profile(), manifest, default_build.iso) == profile


def test_verify_rebuilds_the_same_iso(default_build: BuildResult, lock_file: Path) -> None:
    result = livecd("verify", str(default_build.iso), "--lock", str(lock_file))
    assert result.exit_code == 0, result.output
    assert f"is reproducible: sha256 {default_build.sha256}" in result.stdout


def test_verify_names_what_differs_inside(lock_file: Path, tmp_path: Path) -> None:
    overlays = tmp_path / "overlays"
    shutil.copytree(OVERLAYS, overlays, symlinks=True)
    (overlays / "etc").mkdir(exist_ok=True)
    (overlays / "etc" / "smuggled").write_text("not from the source\n")
    profile = load_profile().with_overrides(timeout=0)
    iso = tmp_path / "modified.iso"
    build(BuildOptions(profile=profile, output=iso, source_date_epoch=EPOCH, lock=lock_file,
                       overlays=overlays))  # fmt: skip
    result = livecd("verify", str(iso), "--lock", str(lock_file))
    assert result.exit_code == 1
    assert (
        "differs: live/initrd.img: live/root.squashfs/etc/smuggled: only in the first"
        in result.stdout
    )
    assert "differs: manifest.json: initramfs differs" in result.stdout
    (line,) = error_lines(result)
    assert "is not what" in line


def test_verify_refuses_an_iso_without_a_manifest(tmp_path: Path, lock_file: Path) -> None:
    iso = tmp_path / "plain.iso"
    plain = pycdlib.PyCdlib()
    plain.new()
    plain.write(str(iso))
    plain.close()
    result = livecd("verify", str(iso), "--lock", str(lock_file))
    assert result.exit_code == 2
    (line,) = error_lines(result)
    assert "no manifest.json" in line
