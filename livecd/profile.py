"""The build profile: one TOML file, parsed once into a frozen dataclass and validated.

Every setting is declared once, as a field of `Profile` with a `Setting` in its metadata:
its TOML place, default, help and check. The same declarations drive the TOML parser
below, the options of `livecd build` (`livecd/cli/build.py`) and the table of settings in
docs/building.md (checked by `tests/builder/test_profile.py`).
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from diskformats.compress import LEVEL_RANGES, METHODS
from livecd.errors import UserError

DEFAULT_PROFILE = Path(__file__).with_name("profiles") / "default.toml"
COMPRESSIONS = METHODS
# A Debian package name, or `name/suite` for one from another suite of the same mirrors.
_PACKAGE_NAME = re.compile(r"[a-z0-9][a-z0-9+.-]+(/[a-z0-9][a-z0-9-]*)?")
_MODULE_NAME = re.compile(r"[A-Za-z0-9_-]+")
_LABEL = re.compile(r"[A-Z0-9_]{1,32}")
_SERIAL = re.compile(r"ttyS[0-9](,[0-9]+)?")


class ProfileError(UserError):
    """A profile that cannot be used; the message names the file and every problem."""


# A check takes a setting's value and returns the problems with it (with its TOML name).
Check = Callable[[Any], list[str]]


@dataclass(frozen=True)
class Setting:
    """How one profile setting is written in TOML and on the command line."""

    section: str  # TOML table, "" for the top level
    key: str
    help: str
    check: Check | None = None
    option: str = ""  # the `livecd build` option; "" gives --NAME-WITH-DASHES
    choices: tuple[str, ...] = ()
    metavar: str | None = None

    @property
    def where(self) -> str:
        return f"{self.section}.{self.key}" if self.section else self.key


def _setting(default: Any = dataclasses.MISSING, **spec: Any) -> Any:
    return field(default=default, metadata={"setting": Setting(**spec)})


def _packages(where: str) -> Check:
    def check(names: Any) -> list[str]:
        names = (names,) if isinstance(names, str) else names
        return [
            f"{where}: package {n!r} is not a valid Debian package name"
            for n in names
            if not _PACKAGE_NAME.fullmatch(n)
        ]

    return check


def _check_output(name: str) -> list[str]:
    if name.endswith(".iso") and "/" not in name:
        return []
    return [f"output {name!r} must be a file name ending in .iso"]


def _check_label(label: str) -> list[str]:
    if _LABEL.fullmatch(label):
        return []
    return [f"volume_label {label!r} must be 1-32 of A-Z, 0-9 and _"]


def _check_architecture(arch: str) -> list[str]:
    return [] if arch == "amd64" else [f"debian.architecture {arch!r}: only amd64 is supported"]


def _check_drivers(names: tuple[str, ...]) -> list[str]:
    return [
        f"module {m!r} is not a valid module name" for m in names if not _MODULE_NAME.fullmatch(m)
    ]


def _check_timeout(seconds: int) -> list[str]:
    return [] if 0 <= seconds <= 600 else [f"boot.timeout {seconds} must be 0..600 seconds"]


def _check_serial(serial: str) -> list[str]:
    if _SERIAL.fullmatch(serial):
        return []
    return [f"boot.serial {serial!r} must look like ttyS0,115200"]


def _check_compression(method: str) -> list[str]:
    if method in COMPRESSIONS:
        return []
    return [f"initramfs.compression {method!r} must be one of " + ", ".join(COMPRESSIONS)]


@dataclass(frozen=True)
class Boot:
    """The boot menu's settings, as the ISO templates read them (`profile.boot.*`)."""

    timeout: int
    cmdline: str
    serial: str

    @property
    def serial_port(self) -> str:
        return self.serial.split(",")[0]

    @property
    def serial_speed(self) -> int:
        speed = self.serial.partition(",")[2]
        return int(speed) if speed else 115200


@dataclass(frozen=True)
class Profile:
    """A validated profile. Field order is the order of the table in docs/building.md."""

    name: str = _setting(section="", key="name", help="The image's name (lock and manifest).")
    output: str = _setting(
        section="",
        key="output",
        help="File name of the ISO, written in the current folder; the option writes it "
        "elsewhere instead (any path), leaving this setting as it is.",
        check=_check_output,
        option="-o/--output",
    )
    volume_label: str = _setting(
        "CPUSHARE_LIVE",
        section="",
        key="volume_label",
        help="ISO 9660 volume label: 1-32 of A-Z, 0-9 and _.",
        check=_check_label,
    )
    orders: tuple[str, ...] = _setting(
        (),
        section="",
        key="orders",
        help="Sell orders built in (/etc/cpushare): .cpu files (relative to the profile; "
        "to the current folder on the command line) or URLs.",
        option="--order",
        metavar="FILE|URL",
    )
    suite: str = _setting("bookworm", section="debian", key="suite", help="Debian suite.")
    architecture: str = _setting(
        "amd64",
        section="debian",
        key="architecture",
        help="Debian architecture; only amd64.",
        check=_check_architecture,
    )
    kernel: str = _setting(
        "linux-image-amd64",
        section="debian",
        key="kernel",
        help="Kernel package; a metapackage is followed to its image.",
        check=_packages("debian.kernel"),
    )
    packages: tuple[str, ...] = _setting(
        (),
        section="debian",
        key="packages",
        help="Debian packages the image takes files from; `name/suite` takes one from "
        "another suite of the same mirrors.",
        check=_packages("debian.packages"),
        option="--package",
    )
    drivers: tuple[str, ...] = _setting(
        (),
        section="modules",
        key="drivers",
        help="Kernel modules shipped, closed over their dependencies.",
        check=_check_drivers,
        option="--driver",
    )
    timeout: int = _setting(
        3, section="boot", key="timeout", help="Boot menu timeout, seconds.", check=_check_timeout
    )
    cmdline: str = _setting(
        "quiet",
        section="boot",
        key="cmdline",
        help="Kernel command line of every boot entry; the memory options of livecd/cmdline.py "
        "follow it.",
    )
    serial: str = _setting(
        "ttyS0,115200",
        section="boot",
        key="serial",
        help="Serial console every entry also logs to.",
        check=_check_serial,
    )
    compression: str = _setting(
        "zstd",
        section="initramfs",
        key="compression",
        help="Initramfs compression.",
        check=_check_compression,
        choices=COMPRESSIONS,
    )
    compression_level: int | None = _setting(
        None,
        section="initramfs",
        key="level",
        help="Compression level; default: the method's own.",
    )
    source: Path = field(default=DEFAULT_PROFILE, compare=False)  # the file it came from

    @property
    def boot(self) -> Boot:
        return Boot(self.timeout, self.cmdline, self.serial)

    def settings(self) -> dict[str, object]:
        """Every setting by name: what the manifest records, and a rebuild overrides."""
        return {f.name: getattr(self, f.name) for f, _ in settings()}

    def with_overrides(self, **changes: Any) -> Profile:
        """A copy with the given settings replaced (None means: keep), validated again."""
        kept = {k: v for k, v in changes.items() if v is not None}
        unknown = set(kept) - {f.name for f, _ in settings()}
        if unknown:
            raise TypeError(f"not a profile setting: {', '.join(sorted(unknown))}")
        if "compression" in kept and "compression_level" not in kept:
            kept["compression_level"] = None  # the profile's level was for its own method
        profile = replace(self, **kept)
        _raise_problems(profile.source, validate(profile))
        return profile


def settings() -> Iterator[tuple[dataclasses.Field[Any], Setting]]:
    """The table of settings: each field of Profile with its Setting, in order."""
    for f in dataclasses.fields(Profile):
        if "setting" in f.metadata:
            yield f, f.metadata["setting"]


def value_kind(f: dataclasses.Field[Any]) -> tuple[type, bool]:
    """(the scalar type, whether the setting is a list of them) of a field."""
    hint = typing.get_type_hints(Profile)[f.name]
    if typing.get_origin(hint) is tuple:
        return typing.get_args(hint)[0], True
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return (args[0] if args else hint), False


def load_profile(path: Path | None = None) -> Profile:
    """Read and validate a profile; a ProfileError names the file and every problem."""
    path = path or DEFAULT_PROFILE
    values, problems = _values(_read_toml(path))
    _raise_problems(path, problems)
    profile = Profile(**values, source=path)
    _raise_problems(path, validate(profile))
    return profile


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ProfileError(f"{path}: no such profile; pass an existing TOML file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{path}: cannot read profile: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{path}: not valid TOML: {exc}") from None


def _values(data: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The settings a profile's TOML gives, by field name, and the problems with its
    tables and types (a setting left out keeps its default)."""
    values: dict[str, Any] = {}
    problems: list[str] = []
    for f, spec in settings():
        table = data.get(spec.section, {}) if spec.section else data
        if not isinstance(table, dict):
            problems.append(f"{spec.section} must be a [{spec.section}] table")
        elif spec.key in table:
            value = _typed(table[spec.key], f, spec, problems)
            if value is not None:
                values[f.name] = value
        elif f.default is dataclasses.MISSING:
            problems.append(f"missing setting {spec.where}")
    return values, problems


def _typed(value: Any, f: dataclasses.Field[Any], spec: Setting, problems: list[str]) -> Any:
    """`value` as the field holds it (lists become tuples), or None with the problem noted."""
    kind, is_list = value_kind(f)
    items = value if is_list and isinstance(value, list) else [value]
    # bool is an int in Python, but `timeout = true` is a mistake in a profile.
    if (is_list and not isinstance(value, list)) or not all(
        isinstance(v, kind) and not (kind is int and isinstance(v, bool)) for v in items
    ):
        wanted = f"a list of {kind.__name__}" if is_list else kind.__name__
        problems.append(f"{spec.where} must be {wanted}, not {type(value).__name__}")
        return None
    return tuple(value) if is_list else value


def validate(profile: Profile) -> list[str]:
    """Every problem of a profile, one sentence each; empty when it is usable."""
    problems = []
    for f, spec in settings():
        if spec.check is not None:
            problems += spec.check(getattr(profile, f.name))
    levels = LEVEL_RANGES.get(profile.compression)  # type: ignore[call-overload]
    if profile.compression_level is not None and (
        levels is None or profile.compression_level not in levels
    ):
        problems.append(
            f"initramfs.level {profile.compression_level} does not suit "
            f"{profile.compression}"
            + (f" (use {levels.start}..{levels.stop - 1})" if levels else "")
        )
    return problems


def _raise_problems(path: Path, problems: list[str]) -> None:
    if problems:
        raise ProfileError("\n".join(f"{path}: {problem}" for problem in problems))
