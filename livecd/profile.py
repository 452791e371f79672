"""The build profile: one TOML file, parsed once into a frozen dataclass and validated."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from livecd.errors import UserError
from livecd.formats.compress import LEVEL_RANGES, METHODS

DEFAULT_PROFILE = Path(__file__).with_name("profiles") / "default.toml"
COMPRESSIONS = METHODS
_PACKAGE_NAME = re.compile(r"[a-z0-9][a-z0-9+.-]+")
_MODULE_NAME = re.compile(r"[A-Za-z0-9_-]+")
_LABEL = re.compile(r"[A-Z0-9_]{1,32}")


class ProfileError(UserError):
    """A profile that cannot be used; the message names the file and every problem."""


@dataclass(frozen=True)
class Boot:
    timeout: int = 3
    cmdline: str = "quiet"
    serial: str = "ttyS0,115200"

    @property
    def serial_port(self) -> str:
        return self.serial.split(",")[0]

    @property
    def serial_speed(self) -> int:
        speed = self.serial.partition(",")[2]
        return int(speed) if speed else 115200


@dataclass(frozen=True)
class Profile:
    name: str
    output: str
    volume_label: str
    suite: str
    architecture: str
    kernel: str
    packages: tuple[str, ...]
    drivers: tuple[str, ...]
    boot: Boot = field(default_factory=Boot)
    compression: str = "zstd"
    compression_level: int | None = None
    orders: tuple[str, ...] = ()  # .cpu files (relative to the profile) or URLs
    source: Path = DEFAULT_PROFILE

    def with_overrides(self, **changes: Any) -> Profile:
        """A copy with the given settings replaced (None means: keep), validated again."""
        kept = {k: v for k, v in changes.items() if v is not None}
        if "compression" in kept and "compression_level" not in kept:
            kept["compression_level"] = None  # the profile's level was for its own method
        boot_keys = {"timeout", "cmdline", "serial"}
        boot = replace(self.boot, **{k: kept.pop(k) for k in list(kept) if k in boot_keys})
        profile = replace(self, boot=boot, **kept)
        _raise_problems(profile.source, validate(profile))
        return profile


def _get(data: dict[str, Any], section: str, key: str, kind: type, default: Any) -> Any:
    table = data.get(section, {}) if section else data
    value = table.get(key, default) if isinstance(table, dict) else default
    if value is _REQUIRED:
        raise _Missing(f"{section + '.' if section else ''}{key}")
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        where = f"{section}.{key}" if section else key
        raise _WrongType(f"{where} must be {kind.__name__}, not {type(value).__name__}")
    return value


_REQUIRED = object()


class _Missing(Exception):
    pass


class _WrongType(Exception):
    pass


def _strings(value: list[Any], where: str) -> tuple[str, ...]:
    if not all(isinstance(v, str) for v in value):
        raise _WrongType(f"{where} must be a list of strings")
    return tuple(value)


def load_profile(path: Path | None = None) -> Profile:
    """Read and validate a profile; a ProfileError names the file and every problem."""
    path = path or DEFAULT_PROFILE
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ProfileError(f"{path}: no such profile; pass an existing TOML file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{path}: cannot read profile: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{path}: not valid TOML: {exc}") from None
    try:
        profile = Profile(
            name=_get(data, "", "name", str, _REQUIRED),
            output=_get(data, "", "output", str, _REQUIRED),
            volume_label=_get(data, "", "volume_label", str, "CPUSHARE_LIVE"),
            suite=_get(data, "debian", "suite", str, "bookworm"),
            architecture=_get(data, "debian", "architecture", str, "amd64"),
            kernel=_get(data, "debian", "kernel", str, "linux-image-amd64"),
            packages=_strings(_get(data, "debian", "packages", list, []), "debian.packages"),
            drivers=_strings(_get(data, "modules", "drivers", list, []), "modules.drivers"),
            boot=Boot(
                timeout=_get(data, "boot", "timeout", int, 3),
                cmdline=_get(data, "boot", "cmdline", str, "quiet"),
                serial=_get(data, "boot", "serial", str, "ttyS0,115200"),
            ),
            compression=_get(data, "initramfs", "compression", str, "zstd"),
            compression_level=_get(data, "initramfs", "level", int, _REQUIRED)
            if "level" in data.get("initramfs", {})
            else None,
            orders=_strings(_get(data, "", "orders", list, []), "orders"),
            source=path,
        )
    except _Missing as exc:
        raise ProfileError(f"{path}: missing setting {exc}") from None
    except _WrongType as exc:
        raise ProfileError(f"{path}: {exc}") from None
    _raise_problems(path, validate(profile))
    return profile


def validate(profile: Profile) -> list[str]:
    """Every problem of a profile, one sentence each; empty when it is usable."""
    problems = []
    if profile.architecture != "amd64":
        problems.append(f"debian.architecture {profile.architecture!r}: only amd64 is supported")
    for pkg in (profile.kernel, *profile.packages):
        if not _PACKAGE_NAME.fullmatch(pkg):
            problems.append(f"package {pkg!r} is not a valid Debian package name")
    problems += [
        f"module {m!r} is not a valid module name"
        for m in profile.drivers
        if not _MODULE_NAME.fullmatch(m)
    ]
    if not 0 <= profile.boot.timeout <= 600:
        problems.append(f"boot.timeout {profile.boot.timeout} must be 0..600 seconds")
    if not re.fullmatch(r"ttyS[0-9],[0-9]+|ttyS[0-9]", profile.boot.serial):
        problems.append(f"boot.serial {profile.boot.serial!r} must look like ttyS0,115200")
    if profile.compression not in COMPRESSIONS:
        problems.append(
            f"initramfs.compression {profile.compression!r} must be one of "
            + ", ".join(COMPRESSIONS)
        )
    levels = LEVEL_RANGES.get(profile.compression)  # type: ignore[call-overload]
    if profile.compression_level is not None and (
        levels is None or profile.compression_level not in levels
    ):
        problems.append(
            f"initramfs.level {profile.compression_level} does not suit "
            f"{profile.compression}"
            + (f" (use {levels.start}..{levels.stop - 1})" if levels else "")
        )
    if not _LABEL.fullmatch(profile.volume_label):
        problems.append(f"volume_label {profile.volume_label!r} must be 1-32 of A-Z, 0-9 and _")
    if not profile.output.endswith(".iso") or "/" in profile.output:
        problems.append(f"output {profile.output!r} must be a file name ending in .iso")
    return problems


def _raise_problems(path: Path, problems: list[str]) -> None:
    if problems:
        raise ProfileError("\n".join(f"{path}: {problem}" for problem in problems))
