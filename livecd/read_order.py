"""The order in which the live system's boot reads its files, for the squashfs image.

squashfs packs small files (most of the image: Python's .pyc files, the drivers) into
shared 128 KiB fragment blocks, decompresses a whole block for any file in it, and keeps
three of them decompressed. Packed in directory order, the fleet's start read its ~150
modules out of order and decompressed many blocks several times over. Packed in the
order they are read (the drivers, then the modules in the order the fleet imports them),
each block is decompressed about once.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterable

from livecd.errors import BuildError
from livecd.guest_imports import CPUSHARE_SRC

PYTHON_LIB = "usr/lib/python3.11"
MODULES = "lib/modules/"
# The program the boot runs first (/etc/init.d/cpushare): its imports, in the order the
# interpreter starts them, which is when it reads their files (a finder first in line
# sees each name then; sys.modules has them in the order they finished). Then what the
# fleet's child imports to read the orders (cpushare.seller.apart), before the first sale.
ROOTS = ("cpushare.seller.fleet", "tomllib")
_PROBE = """
import importlib, json, sys
started = list(sys.modules)
class Seen:
    @staticmethod
    def find_spec(name, path=None, target=None):
        started.append(name)
sys.meta_path.insert(0, Seen)
sys.path.insert(0, sys.argv[1])
for root in sys.argv[2:]:
    importlib.import_module(root)
print(json.dumps(list(dict.fromkeys(started))))
"""


def import_order(roots: tuple[str, ...] = ROOTS) -> list[str]:
    """The modules an interpreter started as the live system starts it (`-I -S`, as
    isolated as the fleet's `-P -s -S` with its hash seed) loads for `roots`, in the
    order it starts loading them."""
    argv = [sys.executable, "-I", "-S", "-c", _PROBE, str(CPUSHARE_SRC.parent), *roots]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise BuildError(f"the fleet does not import on this host's Python: {last}")
    names: list[str] = json.loads(done.stdout)
    return names


def module_paths(name: str) -> list[str]:
    """The image paths a module's code can have: a plain .pyc (the standard library's),
    or the __pycache__ one beside its source (the guest's own package)."""
    parts = name.split(".")
    base = "/".join([PYTHON_LIB, *parts])
    cached = "/".join([PYTHON_LIB, *parts[:-1], "__pycache__", f"{parts[-1]}.cpython-311.pyc"])
    package = f"{base}/__pycache__/__init__.cpython-311.pyc"
    return [f"{base}.pyc", f"{base}/__init__.pyc", cached, package]


def priorities(paths: Iterable[str], modules: list[str]) -> list[tuple[str, int]]:
    """mksquashfs -sort lines (path, priority; the highest is written first) for the
    image's `paths`: the drivers in path order, then `modules` in import order; the rest
    keeps priority 0 and directory order."""
    present = set(paths)
    ordered = sorted(p for p in present if p.startswith(MODULES) and p.endswith(".ko"))
    for name in modules:
        ordered += [p for p in module_paths(name) if p in present and p not in ordered]
    top = 32767
    return [(path, top - i) for i, path in enumerate(ordered[:top])]
