"""The kernel: seccomp refusal, modules closed over their dependencies (compressed ones
decompressed), modprobe's files."""

from __future__ import annotations

import gzip
import lzma
import subprocess
from pathlib import Path

import pytest

from livecd.build import BuildResult
from livecd.deb import unpacked
from livecd.debian import Apt
from livecd.errors import BuildError
from livecd.files import cache_home
from livecd.kernel import Kernel, ModuleTree, check_seccomp, find_kernel, modinfo, module_db

SIGNED = b"~Module signature appended~\n"


@pytest.fixture(scope="module")
def kernel(default_build: BuildResult) -> Kernel:
    apt = Apt(cache_home(), "bookworm")
    return find_kernel(unpacked(apt.fetch(default_build.packages[0]), cache_home()))


@pytest.fixture
def tree(kernel: Kernel, tmp_path: Path) -> ModuleTree:
    """The default kernel's modules, decompressed into a cache of the test's own."""
    return ModuleTree(kernel.modules, tmp_path / "modules")


USB = "kernel/drivers/usb"


def _fake_kernel(tmp_path: Path, config: str) -> Kernel:
    (tmp_path / "config-6.1.0-x").write_text(config)
    return Kernel("6.1.0-x", tmp_path / "vmlinuz", tmp_path / "config-6.1.0-x", tmp_path)


def test_a_kernel_without_seccomp_is_refused(tmp_path: Path) -> None:
    kernel = _fake_kernel(tmp_path, "CONFIG_SMP=y\n# CONFIG_SECCOMP is not set\n")
    with pytest.raises(BuildError, match="lacks CONFIG_SECCOMP=y"):
        check_seccomp(kernel)


def test_a_kernel_with_seccomp_passes(tmp_path: Path) -> None:
    config = "CONFIG_SMP=y\nCONFIG_SECCOMP=y\nCONFIG_SECCOMP_FILTER=y\n"
    settings = check_seccomp(_fake_kernel(tmp_path, config))
    assert settings == {"CONFIG_SECCOMP": "y", "CONFIG_SECCOMP_FILTER": "y"}


def test_seccomp_as_a_module_or_a_look_alike_is_refused(tmp_path: Path) -> None:
    for config in ("CONFIG_SECCOMP=m\n", "CONFIG_SECCOMP_FILTER=y\n", "#CONFIG_SECCOMP=y\n"):
        with pytest.raises(BuildError, match="lacks CONFIG_SECCOMP=y"):
            check_seccomp(_fake_kernel(tmp_path, config))


def test_debians_kernel_has_seccomp(kernel: Kernel) -> None:
    assert kernel.release.endswith("-amd64")
    assert check_seccomp(kernel)["CONFIG_SECCOMP"] == "y"
    assert "CONFIG_SECCOMP=y" in kernel.config.read_text().splitlines()


def test_the_default_kernel_is_debian_12s_with_plain_modules(kernel: Kernel) -> None:
    # Debian 12's 6.1 under /lib/modules, its modules plain; Debian 13's are .ko.xz.
    assert kernel.release.startswith("6.1.")
    assert kernel.modules.parts[-3:-1] == ("lib", "modules")
    assert list(kernel.modules.rglob("igb.ko")) and not list(kernel.modules.rglob("*.ko.xz"))


def test_find_kernel_reads_both_places_of_the_modules(tmp_path: Path) -> None:
    for place in ("lib/modules", "usr/lib/modules"):
        root = tmp_path / place.replace("/", "-")
        (root / "boot").mkdir(parents=True)
        (root / "boot/vmlinuz-6.9.0-x").write_bytes(b"")
        (root / place / "6.9.0-x").mkdir(parents=True)
        assert find_kernel(root).modules == root / place / "6.9.0-x"


def test_modinfo_reads_aliases_and_dependencies(tree: ModuleTree) -> None:
    info = modinfo(tree.module("igb").source.read_bytes())
    assert "pci:v00008086d00001533sv*sd*bc*sc*i*" in info["alias"]
    assert set(info["depends"][0].split(",")) == {"dca", "i2c-algo-bit"}


def test_a_compressed_module_becomes_its_signed_plain_ko(kernel: Kernel, tmp_path: Path) -> None:
    # As Debian 13 ships them: the signed module, xz-compressed (CRC32 check, as kmod's).
    plain = (kernel.modules / "kernel/drivers/net/ethernet/intel/igb/igb.ko").read_bytes()
    packed = tmp_path / "tree/kernel/drivers/net/ethernet/intel/igb/igb.ko.xz"
    packed.parent.mkdir(parents=True)
    packed.write_bytes(lzma.compress(plain, check=lzma.CHECK_CRC32))
    igb = ModuleTree(tmp_path / "tree", tmp_path / "modules").module("igb")
    assert igb.path == Path("kernel/drivers/net/ethernet/intel/igb/igb.ko")
    assert igb.source.read_bytes() == plain
    assert igb.source.read_bytes().endswith(SIGNED)
    assert igb.source.parent == tmp_path / "modules"
    # Cached by content: asked again, the same file, not written again.
    written = igb.source.stat().st_mtime_ns
    again = ModuleTree(tmp_path / "tree", tmp_path / "modules").module("igb").source
    assert again == igb.source and again.stat().st_mtime_ns == written


def test_zstd_gzip_and_plain_modules_are_read_too(tree: ModuleTree, tmp_path: Path) -> None:
    plain = tree.module("e1000").source.read_bytes()
    root = tmp_path / "tree"
    (root / "kernel/a").mkdir(parents=True)
    (root / "kernel/a/e1000.ko").write_bytes(plain)
    subprocess.run(["zstd", "-q", "-o", str(root / "kernel/a/igb.ko.zst")],
                   input=tree.module("igb").source.read_bytes(), check=True)  # fmt: skip
    (root / "kernel/a/dca.ko.gz").write_bytes(gzip.compress(tree.module("dca").source.read_bytes()))
    (root / "kernel/a/i2c-algo-bit.ko.xz").write_bytes(
        lzma.compress(tree.module("i2c_algo_bit").source.read_bytes(), check=lzma.CHECK_CRC32)
    )
    mods = ModuleTree(root, tmp_path / "cache").closure(["e1000", "igb"])
    assert [str(m.path) for m in mods] == [
        "kernel/a/dca.ko", "kernel/a/e1000.ko", "kernel/a/i2c-algo-bit.ko", "kernel/a/igb.ko"
    ]  # fmt: skip
    e1000 = next(m for m in mods if m.name == "e1000")
    assert e1000.source == root / "kernel/a/e1000.ko"  # a plain one is copied from its place
    assert all(m.source.read_bytes().endswith(SIGNED) for m in mods)
    dep = module_db(mods)["modules.dep"]
    assert "kernel/a/igb.ko: kernel/a/i2c-algo-bit.ko kernel/a/dca.ko\n" in dep


def test_a_damaged_compressed_module_is_one_clear_error(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    root.mkdir()
    (root / "bad.ko.xz").write_bytes(b"\xfd7zXZ\0 not really")
    (root / "notelf.ko").write_bytes(b"hello")
    (root / "worse.ko.gz").write_bytes(b"\x1f\x8b\x08 not really")
    with pytest.raises(BuildError, match=r"^module bad.ko.xz: cannot decompress it"):
        ModuleTree(root, tmp_path / "cache").closure(["bad"])
    with pytest.raises(BuildError, match=r"^module worse.ko.gz: cannot decompress it"):
        ModuleTree(root, tmp_path / "cache").closure(["worse"])
    with pytest.raises(BuildError, match=r"^module notelf.ko: not a kernel module"):
        ModuleTree(root, tmp_path / "cache").closure(["notelf"])


def test_closure_brings_every_dependency(tree: ModuleTree) -> None:
    names = {m.name for m in tree.closure(["virtio_net", "igb"])}
    assert {
        "virtio_net",
        "net_failover",
        "failover",
        "igb",
        "dca",
        "i2c_algo_bit",
    } <= names


def test_modules_dep_lists_each_module_before_what_it_needs(tree: ModuleTree) -> None:
    dep = module_db(tree.closure(["xhci_pci"]))["modules.dep"]
    line = next(ln for ln in dep.splitlines() if ln.startswith(f"{USB}/host/xhci-pci.ko:"))
    deps = [Path(p).name for p in line.split(":", 1)[1].split()]
    # modprobe loads from the end: usb-common first, then usbcore, which needs it, then
    # xhci-hcd, which needs usbcore.
    assert deps == ["xhci-hcd.ko", "usbcore.ko", "usb-common.ko"]
    assert not any(".ko." in ln for ln in dep.splitlines())


def test_modules_alias_matches_busybox_format(tree: ModuleTree) -> None:
    alias = module_db(tree.closure(["e1000"]))["modules.alias"]
    assert "alias pci:v00008086d0000100Esv*sd*bc*sc*i* e1000\n" in alias


def test_unknown_module_is_named(tree: ModuleTree) -> None:
    with pytest.raises(BuildError, match="unknown kernel module no_such_driver"):
        tree.closure(["e1000", "no_such_driver"])


def test_builtin_module_names_are_accepted(tree: ModuleTree) -> None:
    # CONFIG_PACKET=y in Debian's kernels (and CONFIG_VIRTIO_PCI=y in Debian 13's):
    # built in, no file.
    assert tree.closure(["af_packet"]) == []
