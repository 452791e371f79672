"""The image's standard library is pruned to what the guest imports: the built image's
own interpreter, with nothing but the image's files, imports every guest module."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from livecd.guest_imports import (
    ALSO_KEPT,
    CPUSHARE_SRC,
    guest_modules,
    imported_names,
    stdlib_closure,
)
from livecd.python_runtime import STDLIB, unused

PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
# Run inside the image: every module named on the command line imports, every kept
# codec is found by name; prints what is loaded and what came as a namespace package (a
# directory without its __init__: the package's code is missing).
_CHECK = """
import codecs, importlib, json, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
    if name.startswith("encodings.") and name != "encodings.aliases":
        codecs.lookup(name.removeprefix("encodings."))
spec = {n: getattr(m, "__spec__", None) for n, m in sys.modules.items()}
hollow = [n for n, s in spec.items() if s is not None and s.origin is None]
print(json.dumps({"loaded": sorted(sys.modules), "hollow": sorted(hollow)}))
"""


def _in_image(root: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    # chroot: the image's python3.11, libraries and standard library, none of the host's.
    return subprocess.run(
        ["chroot", str(root), "/usr/bin/python3.11", "-I", "-S", *argv],
        capture_output=True, text=True, timeout=120, env={"PATH": PATH},
    )  # fmt: skip


def test_the_image_imports_every_guest_module_with_its_own_python(live_root: Path) -> None:
    # The guest's modules, what they import anywhere (inside functions too), the codecs.
    imports = set().union(*(imported_names(p.read_bytes()) for p in CPUSHARE_SRC.rglob("*.py")))
    names = [*guest_modules(), *sorted(imports | ALSO_KEPT)]
    done = _in_image(live_root, "-c", _CHECK, *names)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["hollow"] == []
    # Everything the closure found on the build host loads inside the image too.
    assert stdlib_closure() - set(seen["loaded"]) == set()


def test_the_standard_library_has_no_docstrings_and_the_guest_keeps_its_own(
    live_root: Path,
) -> None:
    # Stripped at build time as -OO would (the asserts stay): the code still runs.
    probe = (
        "import json, tomllib, cpushare.order as o\n"
        "print(json.__doc__, json.dumps.__doc__, tomllib.loads.__doc__)\n"
        "print(bool(o.__doc__), bool(o.order_from_toml.__doc__), json.loads('[1]'))"
    )
    done = _in_image(live_root, "-c", probe)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["None None None", "True True [1]"]


def test_frozen_modules_ship_no_file_and_python_still_finds_its_library(
    live_root: Path,
) -> None:
    # io, site, codecs... come from the interpreter itself; os.pyc stays, as the landmark
    # of the standard library: Python starts without a warning, with site too.
    assert not (live_root / STDLIB / "io.pyc").exists()
    assert not (live_root / STDLIB / "importlib/_bootstrap_external.pyc").exists()
    assert (live_root / STDLIB / "os.pyc").is_file()
    done = subprocess.run(
        ["chroot", str(live_root), "/usr/bin/python3.11", "-c",
         "import io, os, site, sys; print(sys.prefix, io.__spec__.origin, os.__spec__.origin)"],
        capture_output=True, text=True, timeout=120, env={"PATH": PATH},
    )  # fmt: skip
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.split() == ["/usr", "frozen", "frozen"]


def test_a_pruned_module_is_missing_from_the_image(live_root: Path) -> None:
    # The check above fails when pruning drops a module: one the guest never imports
    # is absent, and importing it inside the image fails.
    assert "unittest" not in stdlib_closure()
    assert not (live_root / STDLIB / "unittest").exists()
    done = _in_image(live_root, "-c", "import unittest")
    assert "No module named 'unittest'" in done.stderr


def test_the_closure_holds_imports_made_inside_functions() -> None:
    assert imported_names(b"def f():\n    import tomllib\n    from email import utils\n") == {
        "tomllib",
        "email",
    }
    kept = stdlib_closure()
    assert {"tomllib", "ssl", "encodings.idna", "_strptime"} <= kept
    # Frozen into the interpreter, so no file: `python3 -m` runs without runpy.py.
    assert "runpy" not in kept and "os" in kept
    # The seller speaks its own HTTP (cpushare.seller.http11): no http.client, no email.
    assert not {"http", "http.client", "email", "email.parser"} & kept
    assert unused(f"{STDLIB}/http/client.py", kept)
    assert unused(f"{STDLIB}/email/parser.py", kept)
    assert not unused(f"{STDLIB}/lib-dynload/_ssl.cpython-311-x86_64-linux-gnu.so", kept)
    assert unused(f"{STDLIB}/lib-dynload/_sqlite3.cpython-311-x86_64-linux-gnu.so", kept)
    assert unused(f"{STDLIB}/lib-dynload/_bz2.cpython-311-x86_64-linux-gnu.so", kept)
    assert unused(f"{STDLIB}/xml/dom/minidom.py", kept)
    assert unused(f"{STDLIB}/LICENSE.txt", kept)


def test_the_image_runs_the_jail_self_test_with_its_own_python(live_root: Path) -> None:
    # Beyond imports: the seller's first step at boot (fork, exec the jail loader, wait4,
    # whose rusage needs the resource module from C) with the image's files only, and
    # the image's /proc in a mount namespace of its own. The environment is the image's:
    # the tests point the host's jail at the toolchain's builds.
    script = "from cpushare.startup import seccomp_works; print(seccomp_works(False))"
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c",
         'mount -t proc proc "$1/proc" && exec chroot "$1" /usr/bin/python3.11 -I -S -c "$2"',
         "sh", str(live_root), script],
        capture_output=True, text=True, timeout=120, env={"PATH": PATH},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "event=seccomp status=verified" in done.stdout and done.stdout.endswith("True\n")


def test_the_images_code_keeps_its_line_numbers_but_no_column_ranges(live_root: Path) -> None:
    # Compiled without debug ranges (livecd.pyc): a traceback still names each frame's
    # line, of the standard library's code and of the guest's; no code object carries the
    # columns that 3.11 draws ^^^ with.
    probe = (
        "import json, traceback, cpushare.order as o\n"
        "def columns(code):\n"
        "    yield from (p[2:] for p in code.co_positions())\n"
        "    for c in code.co_consts:\n"
        "        if hasattr(c, 'co_positions'):\n"
        "            yield from columns(c)\n"
        "codes = [json.decoder.JSONDecoder.raw_decode.__code__, o.order_from_toml.__code__]\n"
        "print({c for code in codes for c in columns(code)})\n"
        "try:\n"
        "    json.loads('{')\n"
        "except ValueError as exc:\n"
        "    frames = traceback.extract_tb(exc.__traceback__)\n"
        "    print([(f.filename, isinstance(f.lineno, int) and f.lineno > 1) for f in frames])\n"
    )
    done = _in_image(live_root, "-c", probe)
    assert done.returncode == 0, done.stderr
    columns, frames = done.stdout.splitlines()
    assert columns == "{(None, None)}"
    lib = "/usr/lib/python3.11/json"
    assert frames == str(
        [("<string>", True), (f"{lib}/__init__.py", True), (f"{lib}/decoder.py", True),
         (f"{lib}/decoder.py", True)]
    )  # fmt: skip
