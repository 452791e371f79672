"""The kernel: its seccomp check, and the driver modules the image ships.

Debian's kernel package ships no modules.dep; the builder reads each chosen module's
`.modinfo` section, closes the set over its dependencies and writes modules.dep and
modules.alias itself, so that busybox's modprobe loads drivers by modalias at boot.
Modules are copied byte for byte: their appended signatures must stay valid under
Secure Boot's lockdown.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from livecd.errors import BuildError


@dataclass(frozen=True)
class Kernel:
    release: str
    vmlinuz: Path
    config: Path
    modules: Path  # lib/modules/RELEASE inside the unpacked package


def find_kernel(tree: Path) -> Kernel:
    """The kernel inside an unpacked linux-image package."""
    images = sorted((tree / "boot").glob("vmlinuz-*"))
    if not images:
        raise BuildError(f"{tree.name}: the kernel package holds no /boot/vmlinuz-*")
    release = images[-1].name.removeprefix("vmlinuz-")
    return Kernel(
        release=release,
        vmlinuz=images[-1],
        config=tree / "boot" / f"config-{release}",
        modules=tree / "lib" / "modules" / release,
    )


def check_seccomp(kernel: Kernel) -> dict[str, str]:
    """Refuse a kernel without CONFIG_SECCOMP=y: its jail could not be made safe. Returns
    the kernel's CONFIG_SECCOMP* settings, for the caller to report."""
    try:
        config = kernel.config.read_text(errors="replace").splitlines()
    except OSError:
        raise BuildError(
            f"kernel {kernel.release} ships no config file: cannot check CONFIG_SECCOMP"
        ) from None
    settings = dict(
        line.split("=", 1) for line in config if line.startswith("CONFIG_SECCOMP") and "=" in line
    )
    if settings.get("CONFIG_SECCOMP") != "y":
        raise BuildError(
            f"kernel {kernel.release} lacks CONFIG_SECCOMP=y: jobs could not run in a "
            "seccomp jail; use a kernel built with it (Debian's linux-image-amd64 is)"
        )
    return settings


@dataclass(frozen=True)
class Module:
    name: str
    path: Path  # relative to lib/modules/RELEASE
    depends: tuple[str, ...]
    aliases: tuple[str, ...]


def modinfo(ko: bytes) -> dict[str, list[str]]:
    """The key=value strings of a module's .modinfo ELF section."""
    if ko[:4] != b"\x7fELF" or ko[4] != 2:
        raise ValueError("not a 64-bit ELF object")
    (shoff,) = struct.unpack_from("<Q", ko, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", ko, 0x3A)

    def section(i: int) -> tuple[int, int, int]:
        name, _, _, _, offset, size = struct.unpack_from("<IIQQQQ", ko, shoff + i * shentsize)
        return name, offset, size

    _, stroff, _ = section(shstrndx)
    info: dict[str, list[str]] = {}
    for i in range(shnum):
        name, offset, size = section(i)
        if ko[stroff + name : ko.index(b"\0", stroff + name)] == b".modinfo":
            for item in ko[offset : offset + size].split(b"\0"):
                key, sep, value = item.decode(errors="replace").partition("=")
                if sep:
                    info.setdefault(key, []).append(value)
    return info


def _norm(name: str) -> str:
    return name.replace("-", "_")


class ModuleTree:
    """The modules of one kernel release, looked up by name."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.paths = {_norm(p.name.split(".ko")[0]): p for p in root.rglob("*.ko*")}
        builtin = root / "modules.builtin"
        self.builtin = (
            {_norm(Path(line).name.split(".ko")[0]) for line in builtin.read_text().split()}
            if builtin.exists()
            else set()
        )

    def module(self, name: str) -> Module:
        path = self.paths[_norm(name)]
        data = path.read_bytes()
        if path.suffix != ".ko":
            raise BuildError(f"module {path.name}: compressed modules are not supported")
        info = modinfo(data)
        depends = [d for d in ",".join(info.get("depends", [])).split(",") if d]
        return Module(
            name=_norm(name),
            path=path.relative_to(self.root),
            depends=tuple(_norm(d) for d in depends),
            aliases=tuple(info.get("alias", [])),
        )

    def closure(self, names: Iterable[str]) -> list[Module]:
        """The named modules and everything they depend on, sorted by name. Names built
        into the kernel are accepted and need no file."""
        chosen: dict[str, Module] = {}
        todo = [_norm(n) for n in names]
        unknown = [n for n in todo if n not in self.paths and n not in self.builtin]
        if unknown:
            raise BuildError(
                f"unknown kernel module {', '.join(unknown)}: check modules.drivers in the profile"
            )
        while todo:
            name = todo.pop()
            if name in chosen or name in self.builtin:
                continue
            chosen[name] = self.module(name)
            todo += chosen[name].depends
        return [chosen[n] for n in sorted(chosen)]


def module_db(modules: list[Module]) -> dict[str, str]:
    """modules.dep and modules.alias for exactly these modules, in modprobe's formats.

    modprobe loads a line's dependencies from last to first, so each line lists them in
    reverse load order: every module before the modules it needs.
    """
    by_name = {m.name: m for m in modules}

    def load_order(m: Module, done: list[str]) -> list[str]:
        for d in m.depends:
            if d in by_name and d not in done:
                load_order(by_name[d], done)
                done.append(d)
        return done

    def dep_line(m: Module) -> str:
        deps = [str(by_name[d].path) for d in reversed(load_order(m, []))]
        return " ".join([f"{m.path}:", *deps])

    dep = "".join(dep_line(m) + "\n" for m in modules)
    alias = "".join(f"alias {a} {m.name}\n" for m in modules for a in m.aliases)
    return {"modules.dep": dep, "modules.alias": alias}
