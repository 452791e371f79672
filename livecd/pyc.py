"""Python modules of the image compiled at build time (under emulation, compiling at boot
would cost seconds) into unchecked-hash `.pyc` files, cached by the hash of their source:
a warm rebuild recompiles nothing.

They are compiled by a child interpreter started with `-X no_debug_ranges`: their line
tables keep every line number (tracebacks name the failing line) but not the column
ranges that 3.11 adds to draw `^^^` under the failing expression, which made the line
tables half of the code's bytes: the compressed image is 0.2 MB smaller without them."""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import marshal
import stat
import subprocess
import sys
import types
from collections.abc import Iterable
from pathlib import Path

from diskformats.cpio import Entry
from livecd.errors import BuildError
from livecd.files import atomic_write
from livecd.python_runtime import STDLIB

_REG = stat.S_IFREG | 0o644
# Part of the cache key of compiled files: a change of format compiles everything again.
_PYC_FORMAT = importlib.util.MAGIC_NUMBER + b"unchecked-hash marshal-2 no-debug-ranges"
# The folder from which the child interpreter imports this module.
_ROOT = Path(__file__).resolve().parent.parent
_CHILD = "from livecd.pyc import compile_batch; compile_batch()"
_DOCUMENTED = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def compiled(entries: Iterable[Entry], cache: Path) -> list[Entry]:
    """`entries` with every module of the interpreter's library compiled at build time
    into an unchecked-hash `.pyc`, whose bytes depend on the source alone. The standard
    library ships compiled only (`X.pyc` in place of `X.py`, which Python imports without
    a source): half the size; and without its docstrings, as `-OO` would (its asserts
    stay): 16% less again, which no seller reads. `cpushare` keeps its sources beside
    `__pycache__/` and its docstrings, so that a seller's traceback on a volunteer's
    screen shows the failing line."""
    if sys.version_info[:2] != (3, 11):
        raise BuildError(
            "the image's Python is 3.11: run the builder with Python 3.11 so that its "
            f".pyc files match (this is {sys.version.split()[0]})"
        )
    out = []
    todo: list[tuple[bytes, str, bool, str]] = []
    for e in entries:
        if not (
            e.path.startswith(STDLIB + "/") and e.path.endswith(".py") and stat.S_ISREG(e.mode)
        ):
            out.append(e)
            continue
        guest = e.path.startswith(f"{STDLIB}/cpushare/")
        source = e.source.read_bytes() if e.source else e.data
        pyc = _pyc_path(source, "/" + e.path, cache, docstrings=guest)
        if not pyc.exists():
            todo.append((source, "/" + e.path, guest, str(pyc)))
        parent, _, name = e.path.rpartition("/")
        if guest:
            out += [e, Entry(f"{parent}/__pycache__/{name[:-3]}.cpython-311.pyc", _REG, source=pyc)]
        else:
            out.append(Entry(f"{e.path}c", _REG, source=pyc))
    if todo:
        _compile_in_child(todo)
    return out


def _pyc_path(source: bytes, dfile: str, cache: Path, *, docstrings: bool) -> Path:
    kind = b"docstrings\0" if docstrings else b"no-docstrings\0"
    key = hashlib.sha256(_PYC_FORMAT + kind + dfile.encode() + b"\0" + source)
    return cache / "pyc" / f"{key.hexdigest()}.pyc"


def _compile_in_child(todo: list[tuple[bytes, str, bool, str]]) -> None:
    """Compile `todo` [(source, path in the image, keep docstrings, .pyc to write)] in one
    child interpreter without debug ranges (the option is read at its start only)."""
    # -E -s: nothing of the environment or the user's site changes what it compiles.
    argv = [sys.executable, "-X", "no_debug_ranges", "-E", "-s", "-c",
            f"import sys; sys.path.insert(0, {str(_ROOT)!r}); {_CHILD}"]  # fmt: skip
    done = subprocess.run(argv, input=marshal.dumps(todo), capture_output=True)
    if done.returncode != 0:
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        raise BuildError(lines[-1] if lines else f"compiling .pyc files: exit {done.returncode}")


def compile_batch() -> None:
    """The child's side of `_compile_in_child`: the batch from standard input; a module
    that does not compile is one line on standard error and exit status 1."""
    if sys._xoptions.get("no_debug_ranges") is not True:
        raise SystemExit("livecd.pyc: the compiling interpreter must run with -X no_debug_ranges")
    for source, dfile, docstrings, out in marshal.loads(sys.stdin.buffer.read()):
        try:
            tree = ast.parse(source, dfile)
            if not docstrings:
                tree = without_docstrings(tree)
            code = compile(tree, dfile, "exec", dont_inherit=True)
        except (SyntaxError, ValueError) as exc:
            raise SystemExit(f"{dfile} does not compile: {exc}") from None
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write(Path(out), _pyc_bytes(source, code))


def without_docstrings(tree: ast.Module) -> ast.Module:
    """`tree` without the docstrings of its module, classes and functions: their
    `__doc__` is None, as under `python -OO`. A body that was only a docstring becomes
    `pass` at the docstring's place."""
    for node in ast.walk(tree):
        if not isinstance(node, _DOCUMENTED):
            continue
        first = node.body[0] if node.body else None
        if (
            isinstance(first, ast.Expr)
            and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)
        ):
            node.body = node.body[1:] or [ast.copy_location(ast.Pass(), first)]
    return tree


def _pyc_bytes(source: bytes, code: types.CodeType) -> bytes:
    """An unchecked-hash `.pyc` (PEP 552). Marshal format 4, which py_compile writes,
    flags an object as shared when its reference count in the compiling process is above
    one, so the bytes depend on what that process imported before; format 2 has no
    shared references, and every Python 3 reads it."""
    flags = (0b01).to_bytes(4, "little")  # hash-based, not checked against the source
    return (
        importlib.util.MAGIC_NUMBER
        + flags
        + importlib.util.source_hash(source)
        + (marshal.dumps(code, 2))
    )
