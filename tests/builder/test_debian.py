"""Debian inputs: the machine's sources restricted to the suite, apt in a private state."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from livecd.build import BuildResult
from livecd.debian import Apt, Package, kernel_image_of, resolve, suite_sources
from livecd.errors import BuildError, UserError
from livecd.files import cache_home

DEB822 = """\
Types: deb
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://mirror.example/debian
Suites: bookworm
Components: main

Types: deb
URIs: http://other.example/repo
Suites: nodistro
Components: main
"""

ONE_LINE = """\
# a comment
deb [signed-by=/usr/share/keyrings/k.gpg] http://mirror.example/security bookworm-security main
deb http://mirror.example/debian sid main
"""


def test_only_the_suites_entries_are_kept(tmp_path: Path) -> None:
    (tmp_path / "debian.sources").write_text(DEB822)
    (tmp_path / "extra.list").write_text(ONE_LINE)
    (tmp_path / "old.list.disabled").write_text("deb http://x.example/ bookworm main\n")
    text = suite_sources("bookworm", [tmp_path])
    assert "Suites: bookworm bookworm-updates\n" in text
    assert "trixie" not in text and "sid" not in text and "nodistro" not in text
    assert "deb-src" not in text and "x.example" not in text
    assert "URIs: http://mirror.example/security\nSuites: bookworm-security" in text
    assert "Signed-By: /usr/share/keyrings/k.gpg" in text


def test_no_source_for_the_suite_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "x.list").write_text("deb http://mirror.example/debian sid main\n")
    apt = Apt(tmp_path / "cache", "bookworm", [tmp_path / "x.list"])
    with pytest.raises(UserError, match="no apt source for Debian bookworm"):
        apt.update()


def test_unreachable_mirror_with_an_empty_cache(tmp_path: Path) -> None:
    # Port 9 on loopback: nothing listens, so the connection is refused at once.
    (tmp_path / "x.list").write_text("deb http://127.0.0.1:9/debian bookworm main\n")
    apt = Apt(tmp_path / "cache", "bookworm", [tmp_path / "x.list"])
    with pytest.raises(UserError, match="cannot update the Debian package lists"):
        apt.show(["busybox-static"])
    assert not apt.has_lists


def test_unknown_package_is_named(default_build: BuildResult) -> None:
    apt = Apt(cache_home(), "bookworm")
    with pytest.raises(BuildError, match="unknown package no-such-package-here"):
        apt.show(["busybox-static", "no-such-package-here"])


def test_packages_come_from_the_cache_by_sha256(default_build: BuildResult) -> None:
    apt = Apt(cache_home(), "bookworm")
    for pkg in default_build.packages:
        assert apt.is_cached(pkg)
        assert apt.fetch(pkg).name == f"{pkg.sha256}.deb"


def test_kernel_metapackage_is_followed_to_its_image() -> None:
    meta = Package(
        "linux-image-amd64",
        "1",
        "0" * 64,
        1,
        depends="linux-image-6.1.0-99-amd64 (= 6.1.1-1), other",
    )
    assert kernel_image_of(meta) == "linux-image-6.1.0-99-amd64"
    image = Package("linux-image-6.1.0-99-amd64", "1", "0" * 64, 1, depends="kmod")
    assert kernel_image_of(image) == "linux-image-6.1.0-99-amd64"


def test_another_suite_is_served_by_the_same_mirrors(tmp_path: Path) -> None:
    (tmp_path / "debian.sources").write_text(DEB822.replace(" trixie", ""))
    (tmp_path / "extra.list").write_text(ONE_LINE)
    text = suite_sources("trixie", [tmp_path], like="bookworm")
    assert "URIs: http://mirror.example/debian\n" in text
    assert "Suites: trixie trixie-updates\n" in text
    assert "URIs: http://mirror.example/security\nSuites: trixie-security" in text
    assert "bookworm" not in text and "sid" not in text and "nodistro" not in text
    assert suite_sources("trixie", [tmp_path]) == ""


def test_a_suite_the_sources_name_is_taken_as_they_say(tmp_path: Path) -> None:
    (tmp_path / "debian.sources").write_text(DEB822)
    text = suite_sources("trixie", [tmp_path], like="bookworm")
    assert "Suites: trixie\n" in text and "bookworm" not in text


def test_a_package_from_another_suite_keeps_it(default_build: BuildResult) -> None:
    # The profile's systemd-boot comes from trixie: resolved and fetched as such.
    apt = Apt(cache_home(), "bookworm")
    name = "systemd-boot-efi-amd64-signed"
    (boot,) = [p for p in default_build.packages if p.name == name]
    assert boot.suite == "trixie" and boot.spec == f"{name}/trixie"
    assert boot.version.startswith("257")
    (again,) = resolve(apt, "linux-image-amd64", [f"{name}/trixie"])[1:]
    assert again == boot
    assert apt.fetch(boot).name == f"{boot.sha256}.deb"
    # Without a suite, a name is the profile's suite's: Debian 12's GRUB, not 13's.
    (ours,) = resolve(apt, "linux-image-amd64", ["grub-efi-amd64-signed"])[1:]
    assert ours.suite == "" and ours.version.startswith("1+2.06")


def test_another_suites_lists_follow_a_refresh_of_the_profiles(tmp_path: Path) -> None:
    # Port 9 on loopback: nothing listens, so fetching the lists fails at once.
    (tmp_path / "x.list").write_text("deb http://127.0.0.1:9/debian bookworm main\n")
    cache = tmp_path / "cache"
    apt = Apt(cache, "bookworm", [tmp_path / "x.list"])
    trixie = cache / "apt" / "trixie" / "state"
    (trixie / "lists").mkdir(parents=True)
    (trixie / "lists" / "x_trixie_InRelease").write_text("")
    assert apt.other("trixie").has_lists  # older lists than bookworm's, both unstamped
    for stamp, when in (
        (trixie, 1_700_000_000),
        (cache / "apt" / "bookworm" / "state", 1_800_000_000),
    ):
        (stamp / "updated").touch()
        os.utime(stamp / "updated", (when, when))
    with pytest.raises(UserError, match="cannot update the Debian package lists"):
        Apt(cache, "bookworm", [tmp_path / "x.list"]).other("trixie")


def test_the_profiles_own_suite_may_be_named(default_build: BuildResult) -> None:
    apt = Apt(cache_home(), "bookworm")
    named, plain = resolve(apt, "linux-image-amd64", ["busybox-static/bookworm", "busybox-static"])[
        1:
    ]
    assert named.spec == "busybox-static/bookworm" and plain.spec == "busybox-static"
    assert (named.version, named.sha256) == (plain.version, plain.sha256)
    assert apt.fetch(named) == apt.fetch(plain)


def test_a_package_of_another_suite_is_fetched_by_its_own_lists(tmp_path: Path) -> None:
    # A lock names it; the cache has neither the package nor that suite's lists yet.
    (tmp_path / "x.list").write_text("deb http://127.0.0.1:9/debian bookworm main\n")
    apt = Apt(tmp_path / "cache", "bookworm", [tmp_path / "x.list"])
    grub = Package("grub-efi-amd64-signed", "1+2.12", "0" * 64, 1, suite="trixie")
    with pytest.raises(UserError, match="cannot update the Debian package lists"):
        apt.fetch(grub)
    sources = tmp_path / "cache" / "apt" / "trixie" / "etc" / "sources.list.d" / "livecd.sources"
    assert "URIs: http://127.0.0.1:9/debian\nSuites: trixie\n" in sources.read_text()
