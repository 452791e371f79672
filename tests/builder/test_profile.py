"""The profile: the default one loads, a bad one is refused with one line per problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from livecd.profile import ProfileError, load_profile


def test_default_profile_names_the_kernel_the_drivers_and_the_output() -> None:
    profile = load_profile()
    assert profile.kernel == "linux-image-amd64"
    assert {
        "e1000",
        "e1000e",
        "igb",
        "igc",
        "r8169",
        "8139too",
        "8139cp",
        "tg3",
        "virtio_net",
        "vmxnet3",
        "pcnet32",
    } <= set(profile.drivers)
    assert profile.output == "libcaca-cpushare-livecd.iso"
    assert profile.compression in ("gzip", "xz", "zstd", "lz4")


def test_every_problem_gets_its_own_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        'name = "x"\noutput = "x.img"\n[debian]\npackages = ["Bad Name"]\n'
        '[boot]\ntimeout = 9999\n[initramfs]\ncompression = "rar"\n'
    )
    with pytest.raises(ProfileError) as err:
        load_profile(bad)
    lines = str(err.value).splitlines()
    assert len(lines) == 4
    assert all(line.startswith(f"{bad}: ") for line in lines)
    text = str(err.value)
    for fragment in ("'Bad Name'", "boot.timeout 9999", "'rar'", "'x.img'"):
        assert fragment in text


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('name = "x"\n', "missing setting output"),
        ('name = "x"\noutput = "x.iso"\n[boot]\ntimeout = "3"\n', "boot.timeout must be int"),
        ("name = \n", "not valid TOML"),
        ('name = "x"\noutput = "x.iso"\n[initramfs]\nlevel = 40\n', "initramfs.level 40"),
    ],
)
def test_malformed_profile_is_one_clear_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "p.toml"
    path.write_text(content)
    with pytest.raises(ProfileError, match=message) as err:
        load_profile(path)
    assert len(str(err.value).splitlines()) == 1


def test_missing_profile_file(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="no such profile"):
        load_profile(tmp_path / "nope.toml")


def test_command_line_overrides_are_validated_too() -> None:
    profile = load_profile()
    assert profile.with_overrides(timeout=0, cmdline="quiet nomodeset").boot.timeout == 0
    assert profile.with_overrides(timeout=None).boot.timeout == profile.boot.timeout
    with pytest.raises(ProfileError, match=r"boot\.timeout"):
        profile.with_overrides(timeout=-1)
