"""The image's pathlib imports urllib.parse (and with it ipaddress) only when a URI is
made: the fleet, whose modules stay in the live system's memory, imports neither. The
image's urllib.parse imports ipaddress only for a bracketed host: the orders' check (a
market URL) imports none."""

from __future__ import annotations

import pathlib
import stat
import subprocess
import sys
import urllib.parse
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


_URLS = """
import sys
import urllib.parse
print(urllib.parse.__file__.startswith(sys.path[0]))
print(urllib.parse.urlsplit("https://market.example.org:8443/v1").port, "ipaddress" in sys.modules)
for host in ("[::1]", "[10.0.0.1]", "[v1.x]", "[vz]"):
    try:
        print(urllib.parse.urlsplit(f"https://{host}:1/").hostname)
    except ValueError as exc:
        print("ValueError", exc)
print("ipaddress" in sys.modules)
"""


def test_urllib_parse_imports_ipaddress_only_for_a_bracketed_host(tmp_path: Path) -> None:
    # This interpreter's urllib.parse, as the builder rewrites it, ahead of its own: the
    # same answers as the unchanged module, ipaddress imported only once a host is bracketed.
    source = Path(urllib.parse.__file__)
    (entry,) = lazy([Entry(f"{STDLIB}/urllib/parse.py", _MODE, source=source)])
    (tmp_path / "urllib").mkdir()
    (tmp_path / "urllib" / "__init__.py").write_bytes(b"")
    (tmp_path / "urllib" / "parse.py").write_bytes(entry.data)

    def run(path: list[str]) -> list[str]:
        code = f"import sys; sys.path[:0] = {path!r}\n{_URLS}"
        argv = [sys.executable, "-I", "-S", "-c", code]
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.splitlines()

    rewritten, unchanged = run([str(tmp_path)]), run([str(source.parents[1])])
    assert rewritten[0] == "True"
    assert rewritten[1] == "8443 False"
    assert rewritten[-1] == "True"
    assert rewritten[2:] == unchanged[2:]
    assert unchanged[1] == "8443 True"  # what the rewrite saves


def test_other_modules_pass_unchanged() -> None:
    other = Entry(f"{STDLIB}/os.py", _MODE, data=b"import sys\n")
    assert lazy([other]) == [other]


def test_a_pathlib_without_the_line_is_one_clear_error() -> None:
    changed = Entry(f"{STDLIB}/pathlib.py", _MODE, data=b"import urllib.parse\n")
    with pytest.raises(BuildError, match=r"^/usr/lib/python3\.11/pathlib\.py has no line "):
        lazy([changed])
