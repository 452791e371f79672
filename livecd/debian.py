"""Debian packages as build inputs: resolved and downloaded with apt in an isolated state
under the builder's cache, verified by apt's signed indices, cached by sha256.

The host's apt state is never touched: apt runs with its own lists, package cache, status
and preferences, using the sources of the machine's apt configuration (or a given file)
restricted to the profile's suite. A package the profile names as `name/suite` comes
from another suite of the same mirrors (e.g. the boot loader of the next release), with
apt state of its own. Once the lists are there, resolution and a cached package need no
network.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from livecd.errors import BuildError, UserError
from livecd.files import atomic_write, sha256_file
from livecd.run import need, run

HOST_SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))


@dataclass(frozen=True)
class Package:
    """One binary package as the signed index describes it."""

    name: str
    version: str
    sha256: str
    size: int
    depends: str = ""
    suite: str = ""  # another suite than the profile's, whose apt state fetches it

    @property
    def label(self) -> str:
        return f"{self.name} {self.version}"

    @property
    def spec(self) -> str:
        """How a profile names it: `name`, or `name/suite` from another suite."""
        return f"{self.name}/{self.suite}" if self.suite else self.name


def suite_sources(suite: str, paths: Iterable[Path] = HOST_SOURCES, like: str = "") -> str:
    """The deb822 stanzas and one-line `deb` entries of `paths` that serve `suite`
    (or its -updates/-security companions), as one deb822 document. When none does and
    `like` is given: those serving `like`, on the same mirrors, renamed to `suite`."""
    text = _serving(suite, paths)
    if text or not like:
        return text
    return re.sub(
        r"^(Suites:.*)$",
        lambda m: re.sub(rf"\b{re.escape(like)}(?=-|\s|$)", suite, m.group(1)),
        _serving(like, paths),
        flags=re.MULTILINE,
    )


def split_spec(spec: str) -> tuple[str, str]:
    """A profile's package `name` or `name/suite` -> (name, suite or "")."""
    name, _, suite = spec.partition("/")
    return name, suite


def _serving(suite: str, paths: Iterable[Path]) -> str:
    stanzas: list[str] = []
    for path in _source_files(paths):
        text = path.read_text(encoding="utf-8", errors="replace")
        if path.suffix == ".sources":
            stanzas += _deb822_for_suite(text, suite)
        else:
            stanzas += _one_line_for_suite(text, suite)
    return "\n\n".join(stanzas) + "\n" if stanzas else ""


def _source_files(paths: Iterable[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix in (".list", ".sources"))
        elif path.is_file():
            files.append(path)
    return files


def _deb822_for_suite(text: str, suite: str) -> list[str]:
    kept = []
    for stanza in re.split(r"\n\s*\n", text):
        lines = [ln for ln in stanza.splitlines() if ln.strip() and not ln.startswith("#")]
        fields = {ln.split(":", 1)[0].strip().lower(): ln for ln in lines if ":" in ln}
        suites = fields.get("suites", "").split(":", 1)[-1].split()
        types = fields.get("types", "").split(":", 1)[-1].split()
        if "deb" not in types or "no" in fields.get("enabled", "").lower():
            continue
        ours = [s for s in suites if s == suite or s.startswith(suite + "-")]
        if ours:
            lines = [ln for ln in lines if not ln.lower().startswith(("suites:", "types:"))]
            kept.append("\n".join(["Types: deb", "Suites: " + " ".join(ours), *lines]))
    return kept


def _one_line_for_suite(text: str, suite: str) -> list[str]:
    kept = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if not words or words[0] != "deb":
            continue
        options = []
        if words[1].startswith("["):
            end = next(i for i, w in enumerate(words) if w.endswith("]"))
            options, words = words[1 : end + 1], ["deb", *words[end + 1 :]]
        if len(words) < 4 or not (words[2] == suite or words[2].startswith(suite + "-")):
            continue
        stanza = [f"Types: deb\nURIs: {words[1]}\nSuites: {words[2]}"]
        stanza.append("Components: " + " ".join(words[3:]))
        signed = [o for o in options if o.strip("[]").startswith("signed-by=")]
        if signed:
            stanza.append("Signed-By: " + signed[0].strip("[]").split("=", 1)[1])
        kept.append("\n".join(stanza))
    return kept


class Apt:
    """apt-get and apt-cache with a private state directory under the cache."""

    def __init__(
        self, cache: Path, suite: str, sources: Sequence[Path] = HOST_SOURCES, like: str = ""
    ) -> None:
        self.root = cache / "apt" / suite
        self.cache = cache
        self.debs = cache / "debs"
        self.suite = suite
        self.sources = sources
        self.like = like  # the suite whose mirrors serve this one, if the sources do not
        self._others: dict[str, Apt] = {}
        for sub in (
            "state/lists/partial",
            "cache/archives/partial",
            "etc/sources.list.d",
            "etc/preferences.d",
        ):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "state" / "status").touch()
        self.debs.mkdir(parents=True, exist_ok=True)

    def _options(self) -> list[str]:
        r = self.root
        opts = {
            "Dir::State": r / "state",
            "Dir::State::status": r / "state" / "status",
            "Dir::Cache": r / "cache",
            "Dir::Etc::sourcelist": r / "etc" / "sources.list",
            "Dir::Etc::sourceparts": r / "etc" / "sources.list.d",
            "Dir::Etc::preferences": r / "etc" / "preferences",
            "Dir::Etc::preferencesparts": r / "etc" / "preferences.d",
            "APT::Architecture": "amd64",
            "APT::Architectures": "amd64",
            "Acquire::Languages": "none",
            "APT::Update::Error-Mode": "any",
        }
        if os.geteuid() == 0:
            # apt drops to the _apt user to download, which cannot write to our cache.
            opts["APT::Sandbox::User"] = "root"
        return [f"-o{key}={value}" for key, value in opts.items()]

    def _apt(self, tool: str, *args: str, cwd: Path | None = None) -> str:
        need(tool, "apt")
        proc = run(
            [tool, "-q", *self._options(), *args],
            cwd=cwd,
            env={**os.environ, "LC_ALL": "C.UTF-8"},
            check=False,
        )
        stderr = proc.stderr.decode(errors="replace")
        if proc.returncode != 0:
            lines = [ln for ln in stderr.splitlines() if ln.startswith(("E:", "W:"))]
            raise _AptFailed(lines[-1] if lines else stderr.strip() or "failed")
        return proc.stdout.decode(errors="replace")

    @property
    def has_lists(self) -> bool:
        return any((self.root / "state" / "lists").glob("*_InRelease"))

    def other(self, suite: str) -> Apt:
        """The apt of another suite, on the mirrors that serve this one unless the sources
        name that suite themselves. Its lists are fetched again when this suite's are
        newer (`--refresh`), so that both are as fresh."""
        if suite == self.suite:
            return self
        if suite not in self._others:
            other = Apt(self.cache, suite, self.sources, like=self.suite)
            if other.has_lists and other.updated < self.updated:
                other.update()
            self._others[suite] = other
        return self._others[suite]

    @property
    def updated(self) -> int:
        """When this state's lists were last fetched (ns; 0 if never, or before stamps)."""
        stamp = self.root / "state" / "updated"
        return stamp.stat().st_mtime_ns if stamp.exists() else 0

    def update(self) -> None:
        """Fetch the signed indices of the profile's suite from the configured mirrors."""
        text = suite_sources(self.suite, self.sources, self.like)
        if not text:
            where = ", ".join(str(p) for p in self.sources)
            raise UserError(
                f"no apt source for Debian {self.suite} in {where}: "
                f"pass --apt-sources FILE with a deb line for {self.suite}"
            )
        atomic_write(self.root / "etc" / "sources.list.d" / "livecd.sources", text.encode())
        try:
            self._apt("apt-get", "update")
        except _AptFailed as exc:
            raise UserError(
                f"cannot update the Debian package lists ({exc}): check the network and "
                "the mirrors in the machine's apt configuration (or --apt-sources)"
            ) from None
        (self.root / "state" / "updated").touch()

    def _lists_fingerprint(self) -> str:
        lists = sorted((self.root / "state" / "lists").glob("*_*"))
        stamp = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in lists]
        return hashlib.sha256(json.dumps(stamp).encode()).hexdigest()[:16]

    def show(self, names: Sequence[str]) -> dict[str, Package]:
        """The candidate version of each named package, from the signed indices. Answers
        are kept until the lists change: asking apt-cache takes a second or more."""
        if not self.has_lists:
            self.update()
        key = hashlib.sha256(json.dumps([self._lists_fingerprint(), *names]).encode())
        memo = self.root / "resolved" / f"{key.hexdigest()[:32]}.json"
        if memo.exists():
            return {n: Package(**fields) for n, fields in json.loads(memo.read_text()).items()}
        found = self._show(names)
        atomic_write(
            memo, json.dumps({n: dataclasses.asdict(p) for n, p in found.items()}).encode()
        )
        return found

    def _show(self, names: Sequence[str]) -> dict[str, Package]:
        try:
            out = self._apt("apt-cache", "show", "--no-all-versions", *names)
        except _AptFailed as exc:
            missing = re.search(r"No packages found|Unable to locate package (\S+)", str(exc))
            unknown = [n for n in names if missing and n in str(exc)] or list(names)
            raise BuildError(
                f"unknown package {', '.join(unknown)} in Debian {self.suite}: "
                "check the package names in the profile"
            ) from None
        found = dict(_parse_packages(out))
        unknown = [n for n in names if n not in found]
        if unknown:
            raise BuildError(
                f"unknown package {', '.join(unknown)} in Debian {self.suite}: "
                "check the package names in the profile"
            )
        return found

    def versions(self, name: str) -> list[Package]:
        """Every version of `name` the signed indices list (a suite, its updates and its
        security fixes each may list one); none when the name is unknown."""
        try:
            out = self._apt("apt-cache", "show", name)
        except _AptFailed:
            return []
        return [pkg for _, pkg in _parse_packages(out)]

    def is_cached(self, pkg: Package) -> bool:
        return (self.debs / f"{pkg.sha256}.deb").exists()

    def fetch(self, pkg: Package) -> Path:
        """The verified .deb of `pkg` from the cache, downloaded first if it is not there
        (by the apt of its suite)."""
        cached = self.debs / f"{pkg.sha256}.deb"
        if cached.exists():
            return cached
        if pkg.suite and pkg.suite != self.suite:
            other = self.other(pkg.suite)
            if not other.has_lists:
                other.update()
            return other.fetch(pkg)
        with tempfile.TemporaryDirectory(dir=self.debs) as tmp:
            try:
                self._apt("apt-get", "download", f"{pkg.name}={pkg.version}", cwd=Path(tmp))
            except _AptFailed as exc:
                raise UserError(
                    f"cannot download {pkg.label} ({exc}): check the network and the mirrors"
                ) from None
            (got,) = Path(tmp).glob("*.deb")
            digest = sha256_file(got)
            if digest != pkg.sha256:
                raise BuildError(f"{pkg.label}: sha256 {digest} does not match the index")
            got.rename(cached)
        return cached


class _AptFailed(Exception):
    pass


def _parse_packages(text: str) -> Iterable[tuple[str, Package]]:
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line and not line[0].isspace() and ":" in line:
                key, value = line.split(":", 1)
                fields[key] = value.strip()
        if "Package" in fields and "SHA256" in fields:
            yield (
                fields["Package"],
                Package(
                    name=fields["Package"],
                    version=fields["Version"],
                    sha256=fields["SHA256"],
                    size=int(fields.get("Size", "0")),
                    depends=fields.get("Depends", ""),
                ),
            )


def kernel_image_of(meta: Package) -> str:
    """The `linux-image-*` package a kernel metapackage depends on (itself if it is one)."""
    for dep in meta.depends.split(","):
        name = dep.strip().split()[0] if dep.strip() else ""
        if name.startswith("linux-image-"):
            return name
    return meta.name


def resolve(apt: Apt, kernel: str, packages: Sequence[str]) -> list[Package]:
    """Exactly the named packages (no dependency closure: the image picks files, it does
    not install a Debian system), with the kernel metapackage followed to its image; a
    `name/suite` from that suite (its Package keeps the suite)."""
    name, suite = split_spec(kernel)
    image = kernel_image_of(apt.other(suite or apt.suite).show([name])[name])
    specs = [f"{image}/{suite}" if suite else image, *packages]
    by_suite: dict[str, list[str]] = {}
    for spec in specs:
        name, suite = split_spec(spec)
        by_suite.setdefault(suite, []).append(name)
    found: dict[str, Package] = {}
    for suite, names in by_suite.items():
        for name, pkg in apt.other(suite or apt.suite).show(names).items():
            found[f"{name}/{suite}" if suite else name] = dataclasses.replace(pkg, suite=suite)
    return [found[spec] for spec in specs]
