"""The lock file: the exact Debian packages (version, sha256, size) a profile resolved to,
so that a later build takes exactly those and a rebuild can be compared byte for byte.

A lock is a small JSON document, versioned, tied to its profile by the profile file's
sha256. Reading one reports every problem, one line each, naming the file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from livecd.debian import Apt, Package
from livecd.errors import BuildError, UserError
from livecd.files import atomic_write, sha256_file
from livecd.profile import Profile

FORMAT = "livecd-lock"
VERSION = 1
_SHA256 = re.compile(r"[0-9a-f]{64}")
_PACKAGE_NAME = re.compile(r"[a-z0-9][a-z0-9+.-]+")
_VERSION = re.compile(r"[0-9A-Za-z.+~:-]+")
_SUITE = re.compile(r"[a-z0-9][a-z0-9-]*")
_RELOCK = "run `livecd lock` again"


class LockError(UserError):
    """A lock file that cannot be used; one line per problem, each naming the file."""


@dataclass(frozen=True)
class Lock:
    """What one resolution of a profile gave: the kernel image first, then the profile's
    packages in its order."""

    profile_name: str
    profile_sha256: str
    suite: str
    architecture: str
    kernel: str
    packages: tuple[Package, ...]


def profile_sha256(profile: Profile) -> str:
    """The hash a lock and the manifest carry for a profile: that of its file."""
    return sha256_file(profile.source)


def make_lock(profile: Profile, packages: Sequence[Package]) -> Lock:
    return Lock(
        profile_name=profile.name,
        profile_sha256=profile_sha256(profile),
        suite=profile.suite,
        architecture=profile.architecture,
        kernel=profile.kernel,
        packages=tuple(
            Package(p.name, p.version, p.sha256, p.size, suite=p.suite) for p in packages
        ),
    )


def dump_lock(lock: Lock) -> bytes:
    document = {
        "format": FORMAT,
        "version": VERSION,
        "profile": {"name": lock.profile_name, "sha256": lock.profile_sha256},
        "suite": lock.suite,
        "architecture": lock.architecture,
        "kernel": lock.kernel,
        "packages": [
            {"name": p.name, "version": p.version, "sha256": p.sha256, "size": p.size}
            | ({"suite": p.suite} if p.suite else {})
            for p in lock.packages
        ],
    }
    return (json.dumps(document, indent=2) + "\n").encode()


def write_lock(lock: Lock, path: Path) -> None:
    """Write `lock` to `path` through a temporary file, so a reader never sees half of it."""
    try:
        atomic_write(path, dump_lock(lock))
    except OSError as exc:
        raise UserError(
            f"cannot write {path}: {exc.strerror}; choose another file with -o"
        ) from None


def read_lock(path: Path) -> Lock:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise LockError(
            f"{path}: no such lock file: write one with `livecd lock -o {path}`"
        ) from None
    except OSError as exc:
        raise LockError(f"{path}: cannot read the lock file: {exc.strerror}") from None
    return parse_lock(data, path)


def parse_lock(data: bytes, where: Path) -> Lock:
    """The lock in `data`, or a LockError listing every problem, one line each."""
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LockError(f"{where}: not a lock file, not valid JSON ({exc}): {_RELOCK}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise LockError(f'{where}: not a lock file (no "format": "{FORMAT}"): {_RELOCK}')
    if document.get("version") != VERSION:
        raise LockError(
            f"{where}: lock version {document.get('version')!r} is not the one this livecd "
            f"reads ({VERSION}): {_RELOCK}"
        )
    problems: list[str] = []
    fields = _Fields(document, problems)
    profile = fields.table("profile")
    lock = Lock(
        profile_name=_Fields(profile, problems, "profile.").string("name"),
        profile_sha256=_Fields(profile, problems, "profile.").sha256("sha256"),
        suite=fields.string("suite"),
        architecture=fields.string("architecture"),
        kernel=fields.string("kernel"),
        packages=tuple(_packages(document.get("packages"), problems)),
    )
    if problems:
        raise LockError("\n".join(f"{where}: {p}" for p in problems))
    return lock


class _Fields:
    """Typed access to one JSON object that records a problem instead of raising."""

    def __init__(self, data: Any, problems: list[str], prefix: str = "") -> None:
        self.data = data if isinstance(data, dict) else {}
        self.problems = problems
        self.prefix = prefix

    def _get(self, key: str, kind: type, what: str) -> Any:
        value = self.data.get(key)
        if value is None:
            self.problems.append(f"{self.prefix}{key} is missing")
        elif not isinstance(value, kind) or isinstance(value, bool):
            self.problems.append(f"{self.prefix}{key} must be {what}, not {value!r}")
        else:
            return value
        return kind()

    def table(self, key: str) -> dict[str, Any]:
        value: dict[str, Any] = self._get(key, dict, "an object")
        return value

    def string(self, key: str, pattern: re.Pattern[str] | None = None) -> str:
        value: str = self._get(key, str, "a string")
        if value and pattern and not pattern.fullmatch(value):
            self.problems.append(f"{self.prefix}{key} {value!r} is not a valid {key}")
        return value

    def optional_string(self, key: str, pattern: re.Pattern[str]) -> str:
        return self.string(key, pattern) if key in self.data else ""

    def sha256(self, key: str) -> str:
        value: str = self._get(key, str, "a string")
        if value and not _SHA256.fullmatch(value):
            self.problems.append(f"{self.prefix}{key} {value!r} is not 64 lower-case hex digits")
        return value

    def size(self, key: str) -> int:
        value: int = self._get(key, int, "a whole number of bytes")
        if value < 0:
            self.problems.append(f"{self.prefix}{key} {value} is negative")
        return value


def _packages(value: Any, problems: list[str]) -> list[Package]:
    if not isinstance(value, list) or not value:
        problems.append("packages must be a non-empty list of {name, version, sha256, size}")
        return []
    packages = []
    seen: set[str] = set()
    for i, entry in enumerate(value):
        if not isinstance(entry, dict):
            problems.append(f"packages[{i}] must be an object, not {entry!r}")
            continue
        fields = _Fields(entry, problems, f"packages[{i}].")
        name = fields.string("name", _PACKAGE_NAME)
        if name in seen:
            problems.append(f"packages[{i}]: {name} is locked twice")
        seen.add(name)
        packages.append(
            Package(
                name=name,
                version=fields.string("version", _VERSION),
                sha256=fields.sha256("sha256"),
                size=fields.size("size"),
                suite=fields.optional_string("suite", _SUITE),
            )
        )
    return packages


def check_lock(lock: Lock, profile: Profile, where: Path) -> None:
    """A LockError, one line per problem, unless `lock` was made from `profile`."""
    problems = []
    relock = f"run `livecd lock --profile {profile.source}` again"
    for key in ("suite", "architecture", "kernel"):
        if getattr(lock, key) != getattr(profile, key):
            problems.append(
                f"{key} {getattr(lock, key)!r} is not the profile's "
                f"{getattr(profile, key)!r}: {relock}"
            )
    locked = [p.spec for p in lock.packages[1:]]
    missing = [n for n in profile.packages if n not in locked]
    extra = [n for n in locked if n not in profile.packages]
    if missing:
        problems.append(f"the profile's {', '.join(missing)} not in the lock: {relock}")
    if extra:
        problems.append(f"{', '.join(extra)} locked but not in the profile: {relock}")
    if not missing and not extra and locked != list(profile.packages):
        problems.append(f"packages are not in the profile's order: {relock}")
    if not problems and lock.profile_sha256 != profile_sha256(profile):
        problems.append(
            f"made from another version of {profile.source} (sha256 "
            f"{lock.profile_sha256[:12]}..., the profile's is "
            f"{profile_sha256(profile)[:12]}...): {relock}"
        )
    if problems:
        raise LockError("\n".join(f"{where}: {p}" for p in problems))


def pinned_packages(apt: Apt, lock: Lock, where: Path) -> list[Package]:
    """The locked packages, each in the cache or still to be had from the mirrors with its
    locked sha256: a LockError names the first that is not."""
    by_suite: dict[str, list[str]] = {}
    for pkg in lock.packages:
        by_suite.setdefault(pkg.suite, []).append(pkg.name)
    index = {
        (suite, name): listed
        for suite, names in by_suite.items()
        for name, listed in _index_entries(apt.other(suite or apt.suite), names).items()
    }
    for pkg in lock.packages:
        listed = index.get((pkg.suite, pkg.name))
        if listed is not None and listed.version == pkg.version:
            if listed.sha256 != pkg.sha256:
                raise LockError(
                    f"{where}: {pkg.label} is locked with sha256 {pkg.sha256}, but Debian's "
                    f"signed index gives {listed.sha256}: the lock was altered; {_RELOCK}"
                )
        elif not apt.is_cached(pkg):
            _fetch_unlisted(apt, pkg, where)
    return list(lock.packages)


def _index_entries(apt: Apt, names: Sequence[str]) -> dict[str, Package]:
    """What the signed index of `apt`'s suite lists now for `names`; nothing when one is
    gone from it."""
    try:
        return apt.show(names)
    except BuildError:
        return {}


def _fetch_unlisted(apt: Apt, pkg: Package, where: Path) -> None:
    # Not the index's current version: the mirror may still carry it (apt can download
    # any version an index lists), or not any more.
    try:
        apt.fetch(pkg)
    except UserError as exc:
        versions = apt.other(pkg.suite or apt.suite).versions(pkg.name)
        listed = ", ".join(sorted({p.version for p in versions})) or "none"
        raise LockError(
            f"{where}: {pkg.label} (sha256 {pkg.sha256[:12]}...) can no longer be had "
            f"(the mirrors list {listed}): run `livecd lock` to pin the current versions "
            f"[{exc}]"
        ) from None


def locked_packages(path: Path, profile: Profile, apt: Apt) -> list[Package]:
    """The packages of the lock at `path`, checked against `profile` and the mirrors."""
    lock = read_lock(path)
    check_lock(lock, profile, path)
    return pinned_packages(apt, lock, path)
