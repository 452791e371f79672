"""The build, as a list of steps: inputs -> rootfs -> initramfs -> boot tree -> ISO."""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from diskformats.compress import compress
from diskformats.cpio import CpioError, Entry, write_newc
from diskformats.iso import IsoFile, write_iso
from livecd import __version__, guest, pyc, python_runtime, rootfs, squashfs, stage1, stdlib_lazy
from livecd.boottree import BIOS_BOOT, BOOT_PACKAGES, EFI_IMAGE, boot_files, esp_image
from livecd.builtin_orders import BuiltinOrder, load_orders, order_entries
from livecd.cmdline import kernel_cmdline
from livecd.deb import unpacked
from livecd.debian import HOST_SOURCES, Apt, Package, resolve
from livecd.errors import BuildError, UserError
from livecd.files import atomic_write, cache_home
from livecd.kernel import Kernel, ModuleTree, check_seccomp, find_kernel
from livecd.lock import locked_packages, profile_sha256
from livecd.profile import Profile, load_profile
from livecd.progress import Progress
from livecd.rootfs import OVERLAYS
from livecd.run import run
from livecd.templates import TEMPLATES, render_tree

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class BuildOptions:
    profile: Profile
    output: Path
    cache: Path = field(default_factory=cache_home)
    apt_sources: Sequence[Path] = HOST_SOURCES
    refresh: bool = False
    source_date_epoch: int | None = None
    templates: Path = TEMPLATES
    overlays: Path = OVERLAYS
    lock: Path | None = None
    orders_base: Path | None = None  # where the orders' files are; None: the profile's folder


@dataclass(frozen=True)
class BuildResult:
    iso: Path
    sha256: str
    size: int
    initramfs_size: int  # compressed, as on the ISO
    rootfs_size: int  # the live system's files, unpacked
    image_size: int  # the live system's squashfs image, inside the initramfs
    packages: list[Package]
    kernel_release: str
    manifest: dict[str, object]


def source_date_epoch(given: int | None) -> int:
    """SOURCE_DATE_EPOCH from the option or the environment, else the last commit's time."""
    if given is not None:
        return _epoch_in_range(given)
    env = os.environ.get("SOURCE_DATE_EPOCH")
    if env is not None:
        try:
            return _epoch_in_range(int(env))
        except ValueError:
            raise UserError(
                f"SOURCE_DATE_EPOCH={env!r} is not an integer: set it to seconds since 1970"
            ) from None
    proc = run(["git", "-C", REPO, "log", "-1", "--format=%ct"], check=False)
    return int(proc.stdout) if proc.returncode == 0 and proc.stdout.strip() else 0


def _epoch_in_range(epoch: int) -> int:
    # The cpio header holds 32 unsigned bits of time.
    if not 0 <= epoch <= 0xFFFFFFFF:
        raise UserError(f"SOURCE_DATE_EPOCH {epoch} is out of range: use 0..4294967295")
    return epoch


def build(opts: BuildOptions, progress: Progress | None = None) -> BuildResult:
    progress = progress or Progress()
    profile = opts.profile
    if not opts.output.absolute().parent.is_dir():
        # Found out now, not after the whole build.
        raise UserError(
            f"cannot write to {opts.output.parent}: no such directory; "
            "choose another output with -o"
        )
    epoch = source_date_epoch(opts.source_date_epoch)
    orders = load_orders(profile.orders, opts.orders_base or profile.source.parent)

    with progress.stage("resolve packages"):
        apt = Apt(opts.cache, profile.suite, opts.apt_sources)
        if opts.refresh or not apt.has_lists:
            apt.update()
        if opts.lock:
            packages = locked_packages(opts.lock, profile, apt)
        else:
            packages = resolve(apt, profile.kernel, profile.packages)
    with progress.stage("fetch packages"):
        missing = [p for p in packages if not apt.is_cached(p)]
        for p in progress.each(missing, "download", _label):
            apt.fetch(p)
        trees = {p.name: unpacked(apt.fetch(p), opts.cache) for p in packages}

    kernel = find_kernel(trees[packages[0].name])
    check_seccomp(kernel)
    context = build_context(profile, kernel, epoch)
    seed = hashlib.sha256(
        json.dumps(
            [
                profile.name,
                epoch,
                [(p.name, p.sha256) for p in packages],
                [o.sha256 for o in orders],
            ]
        ).encode()
    ).digest()

    with progress.stage("root filesystem"):
        entries = root_filesystem(opts, kernel, trees, packages, context)
        entries += order_entries(orders)
    with progress.stage("squashfs image"):
        try:
            image = squashfs.image(entries, epoch, opts.cache)
        except CpioError as exc:
            # Overlays and rendered templates are the user's: two of them at one path.
            raise BuildError(f"the root filesystem cannot be archived: {exc}") from None
    with progress.stage("initramfs"):
        buf = io.BytesIO()
        layout = stage1.root_layout(entries)
        write_newc(first_stage(opts, kernel, trees, context, image, layout), buf, mtime=epoch)
        initramfs = stage1.initramfs(compressed(buf.getvalue(), profile, opts.cache), image, epoch)
    with progress.stage("ESP image"):
        esp = esp_image(
            trees,
            render_tree("esp", context, opts.templates),
            vmlinuz=kernel.vmlinuz,
            initramfs=initramfs,
            volume_id=int.from_bytes(seed[:4], "little"),
            epoch=epoch,
        )
    manifest = build_manifest(profile, packages, orders, kernel, epoch, initramfs)
    with progress.stage("ISO"):
        iso_templates = render_tree("iso", context, opts.templates)
        files = boot_files(trees, iso_templates, esp=esp)
        files.append(IsoFile("manifest.json", data=_json(manifest)))
        digest = write_iso(
            files,
            opts.output,
            label=profile.volume_label,
            bios_boot=BIOS_BOOT,
            efi_image=EFI_IMAGE,
            epoch=epoch,
            seed=seed,
        )
    manifest = {**manifest, "iso": {"name": opts.output.name, "sha256": digest}}
    atomic_write(opts.output.with_name(opts.output.name + ".manifest.json"), _json(manifest))
    return BuildResult(
        iso=opts.output,
        sha256=digest,
        size=opts.output.stat().st_size,
        initramfs_size=len(initramfs),
        rootfs_size=rootfs.size_of(entries),
        image_size=len(image),
        packages=packages,
        kernel_release=kernel.release,
        manifest=manifest,
    )


def given_or_built(iso: Path | None, workdir: Path) -> Path:
    """`iso`, or the default profile built into `workdir` with no boot menu delay: what a
    benchmark boots when it is not told which ISO."""
    if iso is not None:
        return iso
    profile = load_profile().with_overrides(timeout=0)
    return build(BuildOptions(profile=profile, output=workdir / "bench.iso")).iso


def compressed(cpio: bytes, profile: Profile, cache: Path) -> bytes:
    """The compressed initramfs, from the cache when the same archive was compressed the
    same way before: compression is the slowest step of a rebuild."""
    key = f"{hashlib.sha256(cpio).hexdigest()}.{profile.compression}{profile.compression_level}"
    path = cache / "initramfs" / key
    if path.exists():
        return path.read_bytes()
    data = compress(cpio, profile.compression, profile.compression_level)  # type: ignore[arg-type]
    atomic_write(path, data)
    return data


def _label(p: Package) -> str:
    return p.name


def build_context(profile: Profile, kernel: Kernel, epoch: int) -> dict[str, object]:
    """The one context every template is rendered from."""
    return {
        "profile": profile,
        "version": __version__,
        "build_date": time.strftime("%Y-%m-%d", time.gmtime(epoch)),
        "source_date_epoch": epoch,
        "kernel_release": kernel.release,
        "cmdline": kernel_cmdline(profile.boot.cmdline),
        "serial_unit": int(profile.boot.serial_port.removeprefix("ttyS")),
    }


def root_filesystem(
    opts: BuildOptions,
    kernel: Kernel,
    trees: dict[str, Path],
    packages: Sequence[Package],
    context: dict[str, object],
) -> list[Entry]:
    """Every entry of the initramfs, the whole live system."""
    profile = opts.profile
    extra = [
        p.name for p in packages[1:] if p.name not in BOOT_PACKAGES and p.name != "busybox-static"
    ]
    modules = ModuleTree(kernel.modules, opts.cache / "modules").closure(profile.drivers)
    packaged = [e for name in extra for e in rootfs.package_tree(name, trees[name])]
    entries = rootfs.merge(
        rootfs.skeleton(),
        stdlib_lazy.lazy(python_runtime.pruned(packaged)),
        stage1.busybox_links(rootfs.busybox(trees["busybox-static"])),
        rootfs.modules(kernel, modules),
        guest.cpushare_package(),
        guest.jail_binaries(),
        rootfs.overlay(opts.overlays),
        rootfs.rendered(render_tree("rootfs", context, opts.templates)),
    )
    entries = pyc.compiled(entries, opts.cache)
    if not any(e.path == "init" for e in entries):
        raise BuildError(f"no /init in the image: {opts.templates}/rootfs/init.j2 is missing")
    return entries


def first_stage(
    opts: BuildOptions,
    kernel: Kernel,
    trees: dict[str, Path],
    context: dict[str, object],
    image: bytes,
    layout: tuple[list[str], list[str]],
) -> list[Entry]:
    """The initramfs the kernel unpacks: `/init` of the first stage and the image, whose
    top folders `layout` says how /init lays out (`stage1.root_layout`)."""
    stage_context = {
        **context,
        "image": stage1.IMAGE,
        "image_size": len(image),
        "bound": layout[0],
        "copied": layout[1],
        "min_available_mb": stage1.MIN_AVAILABLE_MB,
    }
    return stage1.entries(
        rootfs.busybox(trees["busybox-static"]),
        kernel,
        ModuleTree(kernel.modules, opts.cache / "modules"),
        render_tree("initramfs", stage_context, opts.templates),
        render_tree("rootfs", context, opts.templates),
        [e for e in rootfs.overlay(opts.overlays) if e.path.startswith("etc/acpi/")],
    )


def build_manifest(
    profile: Profile,
    packages: Sequence[Package],
    orders: Sequence[BuiltinOrder],
    kernel: Kernel,
    epoch: int,
    initramfs: bytes,
) -> dict[str, object]:
    return {
        "builder": f"livecd {__version__}",
        "profile": {
            "name": profile.name,
            "sha256": profile_sha256(profile),
            "settings": profile.settings(),
        },
        "orders": [{"name": o.name, "sha256": o.sha256} for o in orders],
        "source_date_epoch": epoch,
        "kernel": kernel.release,
        "packages": [
            {"name": p.name, "version": p.version, "sha256": p.sha256}
            | ({"suite": p.suite} if p.suite else {})
            for p in packages
        ],
        "initramfs": {
            "compression": profile.compression,
            "sha256": hashlib.sha256(initramfs).hexdigest(),
        },
    }


def _json(data: object) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()
