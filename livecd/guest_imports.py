"""The standard library modules the guest imports, so that the image ships those alone:
the closure of every `import` in the `cpushare` package (those inside functions too),
as an interpreter started the way the live system starts it (`python3 -I -S`; the fleet's
`-P -s -S` with only its hash seed in the environment loads the same) loads it.

A module the standard library imports only inside a function (a codec looked up by
name, `_strptime`) is not in that closure: ALSO_KEPT names those the guest can reach.
The builder tests import every guest module with the built image's own interpreter."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import cpushare
from livecd.errors import BuildError

CPUSHARE_SRC = Path(cpushare.__file__).resolve().parent
# Reached by name at run time, never by an `import` the closure sees: the codecs the
# seller can meet (UTF-8 everywhere, ASCII and Latin-1 in HTTP, IDNA and its string
# preparation in host names, the escapes of repr and tracebacks), the parser of
# strptime, resource (os.wait4 makes its rusage from C), and site for an interpreter
# started by hand at the serial shell.
ALSO_KEPT = frozenset(
    {f"encodings.{name}" for name in (
        "aliases", "ascii", "latin_1", "utf_8", "utf_8_sig", "idna", "punycode",
        "raw_unicode_escape", "unicode_escape", "charmap", "utf_16", "utf_16_le",
        "utf_16_be", "utf_32", "utf_32_le", "utf_32_be",
    )}
    | {"encodings", "stringprep", "unicodedata", "_strptime", "resource", "runpy", "site",
       "_sitebuiltins"}
)  # fmt: skip
# bz2 and lzma (and their _compression): shutil imports them under `except ImportError`
# only to learn whether it can write such archives, which the seller never does; their
# C libraries are not in the image.
NEVER_KEPT = frozenset({"bz2", "_bz2", "lzma", "_lzma", "_compression"})
# Frozen into the interpreter (Python 3.11 imports these from its own binary, never from
# their files) but shipped all the same: os.pyc is the landmark by which Python's start
# finds its standard library (getpath); without it, it warns and guesses.
FROZEN_KEPT = frozenset({"os"})
# Run by the closure's interpreter: imports every root, prints the modules loaded and
# the frozen ones among them.
_PROBE = """
import importlib, json, sys
sys.path.insert(0, sys.argv[1])
for name in sys.argv[2:]:
    importlib.import_module(name)
specs = {name: getattr(module, "__spec__", None) for name, module in sys.modules.items()}
frozen = [name for name, spec in specs.items() if getattr(spec, "origin", "") == "frozen"]
print(json.dumps({"loaded": sorted(sys.modules), "frozen": sorted(frozen)}))
"""


def guest_modules() -> list[str]:
    """Every module of the `cpushare` package but `__main__`s (importing one runs it)."""
    out = []
    for path in sorted(CPUSHARE_SRC.rglob("*.py")):
        parts = path.relative_to(CPUSHARE_SRC.parent).with_suffix("").parts
        if parts[-1] == "__main__":
            continue
        out.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return out


def imported_names(source: bytes) -> set[str]:
    """The absolute module names a module's source imports, anywhere in it."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def stdlib_closure() -> frozenset[str]:
    """The standard library modules (dotted names, packages included) the guest loads
    from files: the frozen ones but `FROZEN_KEPT` come from the interpreter itself."""
    roots = set(guest_modules()) | ALSO_KEPT
    for path in CPUSHARE_SRC.rglob("*.py"):
        roots |= imported_names(path.read_bytes())
    argv = [sys.executable, "-I", "-S", "-c", _PROBE, str(CPUSHARE_SRC.parent), *sorted(roots)]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise BuildError(f"the guest's modules do not import on this host's Python: {last}")
    seen: dict[str, list[str]] = json.loads(done.stdout)
    frozen = frozenset(seen["frozen"]) - FROZEN_KEPT
    return (
        frozenset(m for m in seen["loaded"] if m.split(".")[0] != "cpushare") - NEVER_KEPT - frozen
    )
