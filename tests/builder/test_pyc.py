"""The image's `.pyc` files: compiled in a child interpreter without debug ranges."""

from __future__ import annotations

import marshal
import types
from pathlib import Path

import pytest

from diskformats.cpio import Entry
from livecd.errors import BuildError
from livecd.pyc import compiled
from livecd.python_runtime import STDLIB

SOURCE = b"def half(x):\n    return x // 2\n"


def _codes(code: types.CodeType) -> list[types.CodeType]:
    inner = [c for c in code.co_consts if isinstance(c, types.CodeType)]
    return [code, *(d for c in inner for d in _codes(c))]


def test_pyc_keeps_line_numbers_and_drops_column_ranges(tmp_path: Path) -> None:
    (pyc,) = compiled([Entry(f"{STDLIB}/half.py", 0o100644, data=SOURCE)], tmp_path)
    assert pyc.path == f"{STDLIB}/half.pyc" and pyc.source is not None
    code = marshal.loads(pyc.source.read_bytes()[16:])
    positions = [p for c in _codes(code) for p in c.co_positions()]
    assert {p[2:] for p in positions} == {(None, None)}
    assert {1, 2} <= {p[0] for p in positions}
    namespace: dict[str, object] = {}
    exec(code, namespace)
    assert namespace["half"](9) == 4  # type: ignore[operator]


def test_a_module_that_does_not_compile_is_one_line(tmp_path: Path) -> None:
    bad = Entry(f"{STDLIB}/bad.py", 0o100644, data=b"def (")
    with pytest.raises(BuildError, match=r"^/usr/lib/python3\.11/bad\.py does not compile: "):
        compiled([bad], tmp_path)
    assert not list(tmp_path.rglob("*.pyc"))
