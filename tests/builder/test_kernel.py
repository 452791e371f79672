"""The kernel: seccomp refusal, modules closed over their dependencies, modprobe's files."""

from __future__ import annotations

from pathlib import Path

import pytest

from livecd.build import BuildResult
from livecd.deb import unpacked
from livecd.debian import Apt
from livecd.errors import BuildError
from livecd.files import cache_home
from livecd.kernel import Kernel, ModuleTree, check_seccomp, find_kernel, modinfo, module_db


@pytest.fixture(scope="module")
def kernel(default_build: BuildResult) -> Kernel:
    apt = Apt(cache_home(), "bookworm")
    return find_kernel(unpacked(apt.fetch(default_build.packages[0]), cache_home()))


VIRTIO = "kernel/drivers/virtio"


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


def test_modinfo_reads_aliases_and_dependencies(kernel: Kernel) -> None:
    info = modinfo((kernel.modules / "kernel/drivers/net/ethernet/intel/igb/igb.ko").read_bytes())
    assert "pci:v00008086d00001533sv*sd*bc*sc*i*" in info["alias"]
    assert set(info["depends"][0].split(",")) == {"dca", "i2c-algo-bit"}


def test_closure_brings_every_dependency(kernel: Kernel) -> None:
    names = {m.name for m in ModuleTree(kernel.modules).closure(["virtio_net", "igb"])}
    assert {
        "virtio_net",
        "virtio",
        "virtio_ring",
        "net_failover",
        "failover",
        "igb",
        "dca",
        "i2c_algo_bit",
    } <= names


def test_modules_dep_lists_each_module_before_what_it_needs(kernel: Kernel) -> None:
    mods = ModuleTree(kernel.modules).closure(["virtio_pci"])
    dep = module_db(mods)["modules.dep"]
    line = next(ln for ln in dep.splitlines() if ln.startswith(f"{VIRTIO}/virtio_pci.ko:"))
    deps = [Path(p).name for p in line.split(":", 1)[1].split()]
    # modprobe loads from the end: virtio_ring must come after virtio, which needs it.
    assert deps.index("virtio.ko") < deps.index("virtio_ring.ko")


def test_modules_alias_matches_busybox_format(kernel: Kernel) -> None:
    alias = module_db(ModuleTree(kernel.modules).closure(["e1000"]))["modules.alias"]
    assert "alias pci:v00008086d0000100Esv*sd*bc*sc*i* e1000\n" in alias


def test_unknown_module_is_named(kernel: Kernel) -> None:
    with pytest.raises(BuildError, match="unknown kernel module no_such_driver"):
        ModuleTree(kernel.modules).closure(["e1000", "no_such_driver"])


def test_builtin_module_names_are_accepted(kernel: Kernel) -> None:
    # CONFIG_PACKET=y in Debian's kernel: af_packet is built in and needs no file.
    assert ModuleTree(kernel.modules).closure(["af_packet"]) == []
