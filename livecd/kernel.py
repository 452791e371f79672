"""The kernel: its seccomp check, and the driver modules the image ships.

Debian's kernel package ships no modules.dep; the builder reads each chosen module's
`.modinfo` section, closes the set over its dependencies and writes modules.dep and
modules.alias itself, so that busybox's modprobe loads drivers by modalias at boot.
Modules are copied byte for byte: their appended signatures must stay valid under
Secure Boot's lockdown. A compressed module (`.ko.xz`, `.ko.zst`, `.ko.gz`: Debian 13
ships xz) is decompressed at build time into the plain `.ko` it was made from, signature
included (the kernel's build signs a module, then compresses it): busybox's modprobe
hands the file to finit_module without the flag that asks the kernel to decompress it,
and only then falls back to a copy it decompresses in its own memory, so the plain file
is what loads straight away. The decompressed copies are cached by content.
"""

from __future__ import annotations

import gzip
import hashlib
import lzma
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from diskformats.run import need, pipe
from livecd.errors import BuildError
from livecd.files import atomic_write


@dataclass(frozen=True)
class Kernel:
    release: str
    vmlinuz: Path
    config: Path
    modules: Path  # (usr/)lib/modules/RELEASE inside the unpacked package


def find_kernel(tree: Path) -> Kernel:
    """The kernel inside an unpacked linux-image package. Its modules are under
    /lib/modules (Debian 12) or /usr/lib/modules (Debian 13, merged /usr)."""
    images = sorted((tree / "boot").glob("vmlinuz-*"))
    if not images:
        raise BuildError(f"{tree.name}: the kernel package holds no /boot/vmlinuz-*")
    release = images[-1].name.removeprefix("vmlinuz-")
    places = [tree / "lib" / "modules" / release, tree / "usr" / "lib" / "modules" / release]
    return Kernel(
        release=release,
        vmlinuz=images[-1],
        config=tree / "boot" / f"config-{release}",
        modules=next((p for p in places if p.is_dir()), places[0]),
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
    path: Path  # where it goes, relative to lib/modules/RELEASE: always a plain .ko
    depends: tuple[str, ...]
    aliases: tuple[str, ...]
    source: Path  # the plain .ko to copy: the package's own, or its decompressed copy


# How a compressed module's name ends -> the compression, as the kernel's build names it.
COMPRESSED = {".ko.xz": "xz", ".ko.zst": "zstd", ".ko.gz": "gzip"}


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


def _suffix(path: Path) -> str:
    """`.ko`, `.ko.xz` or `.ko.zst`: what a module file's name ends with; "" otherwise."""
    name = path.name
    return next((s for s in (".ko", *COMPRESSED) if name.endswith(s)), "")


def decompress(path: Path, cache: Path) -> Path:
    """The plain `.ko` inside a compressed module, from `cache` (by the compressed file's
    sha256) or decompressed into it."""
    data = path.read_bytes()
    plain = cache / f"{hashlib.sha256(data).hexdigest()}.ko"
    if plain.exists():
        return plain
    method = COMPRESSED[_suffix(path)]
    try:
        if method == "xz":
            ko = lzma.decompress(data, format=lzma.FORMAT_XZ)
        elif method == "gzip":
            ko = gzip.decompress(data)
        else:
            ko = pipe([need("zstd", "zstd"), "-dcq"], data, f"decompressing {path.name}")
    except (lzma.LZMAError, OSError, EOFError) as exc:
        raise BuildError(f"module {path.name}: cannot decompress it ({exc})") from None
    atomic_write(plain, ko)
    return plain


class ModuleTree:
    """The modules of one kernel release, looked up by name. Compressed ones are
    decompressed into `cache` (a folder of plain `.ko` files named by content)."""

    def __init__(self, root: Path, cache: Path) -> None:
        self.root = root
        self.cache = cache
        self.paths = {
            _norm(p.name.removesuffix(_suffix(p))): p for p in root.rglob("*.ko*") if _suffix(p)
        }
        builtin = root / "modules.builtin"
        self.builtin = (
            {_norm(Path(line).name.split(".ko")[0]) for line in builtin.read_text().split()}
            if builtin.exists()
            else set()
        )

    def module(self, name: str) -> Module:
        path = self.paths[_norm(name)]
        suffix = _suffix(path)
        source = path if suffix == ".ko" else decompress(path, self.cache)
        try:
            info = modinfo(source.read_bytes())
        except (ValueError, struct.error, IndexError) as exc:
            raise BuildError(f"module {path.name}: not a kernel module ({exc})") from None
        depends = [d for d in ",".join(info.get("depends", [])).split(",") if d]
        relative = path.relative_to(self.root)
        return Module(
            name=_norm(name),
            path=relative.with_name(relative.name.removesuffix(suffix) + ".ko"),
            depends=tuple(_norm(d) for d in depends),
            aliases=tuple(info.get("alias", [])),
            source=source,
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
