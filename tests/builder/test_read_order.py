"""The squashfs image's read order: the drivers, then the fleet's modules as imported."""

from __future__ import annotations

from livecd.read_order import import_order, module_paths, priorities

LIB = "usr/lib/python3.11"


def test_import_order_starts_each_module_before_what_it_imports() -> None:
    order = import_order()
    assert order.index("cpushare.seller.fleet") < order.index("cpushare.seller.agent")
    assert order.index("cpushare.seller.fleet") < order.index("ssl")
    # The orders' parser, read before the first sale by the fleet's child, after the fleet.
    assert order.index("cpushare.seller.agent") < order.index("tomllib")


def test_module_paths_cover_the_stdlib_and_the_package_layouts() -> None:
    assert f"{LIB}/ssl.pyc" in module_paths("ssl")
    assert f"{LIB}/json/__init__.pyc" in module_paths("json")
    assert f"{LIB}/cpushare/seller/__pycache__/fleet.cpython-311.pyc" in module_paths(
        "cpushare.seller.fleet"
    )


def test_priorities_put_drivers_then_imports_in_order_and_leave_the_rest() -> None:
    ko = "lib/modules/6.1.0/kernel/drivers/net/virtio_net.ko"
    fleet = f"{LIB}/cpushare/seller/__pycache__/fleet.cpython-311.pyc"
    paths = [f"{LIB}/zipfile.pyc", f"{LIB}/ssl.pyc", fleet, ko, "etc/passwd"]
    lines = priorities(paths, ["sys", "cpushare.seller.fleet", "ssl", "ssl"])
    assert [path for path, _ in lines] == [ko, fleet, f"{LIB}/ssl.pyc"]
    values = [priority for _, priority in lines]
    assert values == sorted(values, reverse=True) and len(set(values)) == 3
