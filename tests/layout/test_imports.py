"""The layout's one rule: imports run one way, `livecd` -> `market` -> `diskformats` and
`cpushare` (neither of which imports the other or anything above it), and the guest package
`cpushare` needs nothing but Python 3.11's standard library."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("livecd", "market", "diskformats", "cpushare")
# What each package may import of the project's own.
ALLOWED = {
    "livecd": {"livecd", "market", "diskformats", "cpushare"},
    "market": {"market", "diskformats", "cpushare"},
    "diskformats": {"diskformats"},
    "cpushare": {"cpushare"},
}


def imported_modules(path: Path) -> set[str]:
    """Every absolute module name `path` imports, at any depth (lazy imports count too)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def modules_of(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_run_one_way(package: str) -> None:
    wrong = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in modules_of(package)
        for name in sorted(imported_modules(path))
        if name.split(".")[0] in PACKAGES and name.split(".")[0] not in ALLOWED[package]
    ]
    assert wrong == []


def test_the_guest_package_needs_only_the_standard_library() -> None:
    stdlib = sys.stdlib_module_names | {"__future__"}
    foreign = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in modules_of("cpushare")
        for name in sorted(imported_modules(path))
        if name.split(".")[0] not in stdlib | {"cpushare"}
    ]
    assert foreign == []


def test_the_guest_package_s_c_includes_nothing_from_outside_it() -> None:
    """The guest's C (the jail loader) includes the system's headers or files beside it,
    not the job SDK's header (livecd/sdk), which only the builder's -I would find."""
    local = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.MULTILINE)
    outside = [
        f"{path.relative_to(ROOT)} includes {name}"
        for path in sorted((ROOT / "cpushare").rglob("*.[ch]"))
        for name in local.findall(path.read_text())
        if not (path.parent / name).is_file()
    ]
    assert outside == []


def test_the_rule_sees_a_wrong_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from livecd.build import build\n")
    assert imported_modules(module) == {"livecd.build"}


def test_every_package_of_the_project_is_under_the_rule() -> None:
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    assert packages == set(PACKAGES)
