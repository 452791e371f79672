"""The profile: the default one loads, a bad one is refused with one line per problem."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from livecd.cli import main
from livecd.profile import ProfileError, load_profile, settings, value_kind


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


BUILDING = Path(__file__).resolve().parents[2] / "docs" / "building.md"
TABLE_START = "<!-- profile settings: from livecd/profile.py, checked by tests/builder -->"
TABLE_END = "<!-- end of profile settings -->"


def _toml_default(value: object) -> str:
    if value is dataclasses.MISSING:
        return "required"
    if value is None:
        return "none"
    return f"`{json.dumps(list(value) if isinstance(value, tuple) else value)}`"


def settings_table() -> str:
    """The table of profile settings in docs/building.md, made from the settings themselves."""
    rows = ["| setting | type | default | option | meaning |", "|---|---|---|---|---|"]
    for f, spec in settings():
        kind, is_list = value_kind(f)
        shown = "list of " + kind.__name__ if is_list else kind.__name__
        default = _toml_default(f.default)
        option = spec.option.replace("/", ", ") or f"--{f.name.replace('_', '-')}"
        meaning = spec.help + (f" One of {', '.join(spec.choices)}." if spec.choices else "")
        rows.append(f"| `{spec.where}` | {shown} | {default} | `{option}` | {meaning} |")
    return "\n".join(rows)


def test_the_docs_list_every_setting_as_declared() -> None:
    text = BUILDING.read_text()
    start, end = text.index(TABLE_START) + len(TABLE_START), text.index(TABLE_END)
    assert text[start:end].strip() == settings_table(), (
        "docs/building.md's table of profile settings is out of date; paste this between its "
        f"markers:\n{settings_table()}"
    )


def test_every_setting_is_read_from_its_place_and_every_problem_is_named(
    tmp_path: Path,
) -> None:
    # A value of the wrong type for every setting: one line each, all in one error.
    doc: dict[str, dict[str, object]] = {"": {}}
    for f, spec in settings():
        is_list = value_kind(f)[1]
        doc.setdefault(spec.section, {})[spec.key] = [1.5] if is_list else 1.5
    top = "".join(f"{k} = {v!r}\n" for k, v in doc.pop("").items())
    tables = "".join(
        f"[{name}]\n" + "".join(f"{k} = {v!r}\n" for k, v in keys.items())
        for name, keys in doc.items()
    )
    path = tmp_path / "wrong.toml"
    path.write_text(top + tables)
    with pytest.raises(ProfileError) as err:
        load_profile(path)
    lines = str(err.value).splitlines()
    assert len(lines) == len(list(settings()))
    for line, (_, spec) in zip(lines, settings(), strict=True):
        assert line.startswith(f"{path}: {spec.where} must be "), line


def test_every_setting_is_an_option_of_livecd_build() -> None:
    from livecd.cli.build import build_command

    params = {p.name: p for p in build_command.params}
    for f, spec in settings():
        assert f.name in params, f"no option for {spec.where}"
        option = params[f.name]
        assert isinstance(option, click.Option)
        assert option.multiple == value_kind(f)[1]
        assert spec.where in (option.help or "")
    # The option names the command always had.
    for name in ("--compression", "--timeout", "--cmdline", "--order", "--output"):
        assert any(name in p.opts for p in build_command.params), name


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--volume-label", "lower"], "volume_label 'lower' must be"),
        (["--driver", "bad/name"], "module 'bad/name' is not a valid module name"),
        (["--package", "Bad"], "debian.packages: package 'Bad'"),
        (["--serial", "COM1"], "boot.serial 'COM1'"),
        (["--compression-level", "40"], "initramfs.level 40 does not suit zstd"),
        (["--architecture", "arm64"], "only amd64 is supported"),
    ],
)
def test_a_bad_override_is_one_line_before_anything_is_built(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = CliRunner().invoke(main, ["build", "--cache", str(tmp_path / "c"), *args])
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith("livecd: error: ") and message in line, line
    assert not (tmp_path / "c").exists()


def test_overrides_reach_the_profile(tmp_path: Path) -> None:
    profile = load_profile().with_overrides(
        volume_label="OTHER", drivers=("e1000",), compression="gzip", serial="ttyS1,9600"
    )
    assert (profile.volume_label, profile.drivers) == ("OTHER", ("e1000",))
    assert profile.compression_level is None  # the profile's level was zstd's
    assert (profile.boot.serial_port, profile.boot.serial_speed) == ("ttyS1", 9600)
    with pytest.raises(TypeError, match="not a profile setting: colour"):
        profile.with_overrides(colour="red")
