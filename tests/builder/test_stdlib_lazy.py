"""The image's pathlib imports urllib.parse (and with it ipaddress) only when a URI is
made: the fleet, whose modules stay in the live system's memory, imports neither."""

from __future__ import annotations

import pathlib
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from diskformats.cpio import Entry
from livecd.errors import BuildError
from livecd.python_runtime import STDLIB
from livecd.stdlib_lazy import lazy

_FLEET = """
import sys
import cpushare.seller.fleet
from pathlib import Path
print(sorted({"urllib.parse", "ipaddress"} & set(sys.modules)))
print(Path("/a b").as_uri())
"""
_MODE = stat.S_IFREG | 0o644


def test_the_fleet_imports_neither_urllib_parse_nor_ipaddress(tmp_path: Path) -> None:
    # This interpreter's pathlib, as the builder rewrites it, ahead of its own.
    source = Path(pathlib.__file__)
    (entry,) = lazy([Entry(f"{STDLIB}/pathlib.py", _MODE, source=source)])
    (tmp_path / "pathlib.py").write_bytes(entry.data)
    root = Path(__file__).resolve().parents[2]
    code = f"import sys; sys.path[:0] = [{str(tmp_path)!r}, {str(root)!r}]\n{_FLEET}"
    ran = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, check=True
    )
    assert ran.stdout.splitlines() == ["[]", "file:///a%20b"]


def test_other_modules_pass_unchanged() -> None:
    other = Entry(f"{STDLIB}/os.py", _MODE, data=b"import sys\n")
    assert lazy([other]) == [other]


def test_a_pathlib_without_the_line_is_one_clear_error() -> None:
    changed = Entry(f"{STDLIB}/pathlib.py", _MODE, data=b"import urllib.parse\n")
    with pytest.raises(BuildError, match=r"^/usr/lib/python3\.11/pathlib\.py has no line "):
        lazy([changed])
