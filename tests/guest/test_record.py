"""`cpushare.record`: the guest's records behave as the dataclasses they replace, and the
fleet's interpreter loads none of the modules they were replaced to avoid."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cpushare import record as record_module
from cpushare.record import FrozenInstanceError, field, fields, record, replace


@record(frozen=True)
class Point:
    x: int
    y: int = 0
    tags: list[str] = field(default_factory=list)
    secret: str = field(default="", repr=False, metadata={"unit": "none"})


@record(frozen=True)
class Pin:
    a: int
    b: str = ""


@record
class Counter:
    count: int = 0
    seen: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.seen.append(self.count)


@record(eq=False)
class Box:
    content: bytes


def test_init_defaults_and_factories() -> None:
    p = Point(1)
    assert (p.x, p.y, p.tags, p.secret) == (1, 0, [], "")
    assert Point(1).tags is not Point(1).tags
    assert Point(2, 3, ["a"], secret="s") == Point(x=2, y=3, tags=["a"], secret="s")
    with pytest.raises(TypeError):
        Point()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Point(1, z=2)  # type: ignore[call-arg]


def test_repr_leaves_out_what_it_should() -> None:
    assert repr(Point(1, secret="hidden")) == "Point(x=1, y=0, tags=[])"


def test_frozen_means_no_assignment_and_a_hash() -> None:
    p = Point(1, 2)
    with pytest.raises(FrozenInstanceError):
        p.x = 3  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del p.y  # type: ignore[misc]
    assert hash(Pin(1, "a")) == hash(Pin(1, "a"))
    assert len({Pin(1, "a"), Pin(1, "a"), Pin(2)}) == 2


def test_equality_by_value_or_by_identity() -> None:
    assert Point(1) != Point(2) and Point(1) != (1, 0, [], "")
    c = Counter(3)
    c.count = 4  # not frozen
    assert c.seen == [3] and Counter(1) == Counter(1)
    with pytest.raises(TypeError):
        hash(c)  # equal by value and mutable: unhashable, as a dataclass
    assert Box(b"a") != Box(b"a")
    box = Box(b"a")
    assert box == box and len({Box(b"a"), Box(b"a")}) == 2


def test_fields_and_replace() -> None:
    assert [f.name for f in fields(Point)] == ["x", "y", "tags", "secret"]
    assert fields(Point(1)) == fields(Point)
    assert fields(Point)[3].metadata == {"unit": "none"} and fields(Point)[0].metadata == {}
    assert not fields(Point)[0].has_default and fields(Point)[2].has_default
    p = Point(1, 2, ["t"], "s")
    q = replace(p, y=5)
    assert q == Point(1, 5, ["t"], "s") and p.y == 2
    assert replace(Counter(7), count=8).seen == [7, 8]  # __post_init__ runs for the copy
    with pytest.raises(TypeError):
        fields(object())


def test_records_of_one_shape_share_one_compiled_init() -> None:
    # Compiling is what a record costs at import: a shape (fields, factories' places,
    # frozen, __post_init__) is compiled once, each record's names put in a copy.
    @record(frozen=True)
    class Left:
        a: int
        b: str = "left"

    shapes = len(record_module._TEMPLATES)

    @record(frozen=True)
    class Right:
        first: int
        second: str = "right"

    assert len(record_module._TEMPLATES) == shapes
    assert Left.__init__.__code__.co_code == Right.__init__.__code__.co_code
    assert Right.__init__.__code__.co_varnames == ("self", "first", "second")
    assert Right.__init__.__qualname__.endswith("Right.__init__")
    assert (Left(1).b, Right(first=2).second, Right(3, "x").second) == ("left", "right", "x")
    with pytest.raises(TypeError, match="missing 1 required positional argument: 'first'"):
        Right()


def test_a_field_without_default_after_one_with_is_refused() -> None:
    with pytest.raises(TypeError, match="without a default"):

        @record
        class Wrong:
            a: int = 1
            b: int


# Loaded by none of the fleet's modules (dataclasses pulls inspect, ast, dis and
# tokenize; typing is for the type checker; the orders are read in a child, with tomllib
# and its datetime; the idna codec's modules are not needed for an ASCII host name, nor
# random's for jitter; the rest is for rare paths, imported there): each costs the live
# system memory in the fleet and, as the sellers write to their pages, in each seller.
# (urllib.parse and ipaddress are not here: this host's pathlib imports them, the image's
# does not, tests/builder/test_stdlib_lazy.py.)
NOT_IN_THE_FLEET = (
    "dataclasses",
    "inspect",
    "ast",
    "dis",
    "tokenize",
    "subprocess",
    "shutil",
    "traceback",
    "textwrap",
    "argparse",
    "gettext",
    "typing",
    "tomllib",
    "datetime",
    "encodings.idna",
    "stringprep",
    "secrets",
    "hmac",
    "random",
)


def test_the_fleet_imports_none_of_the_heavy_modules() -> None:
    # As /etc/init.d/cpushare runs it (-S: no site), but with the tests' module path.
    code = "import sys, cpushare.seller.fleet; print(' '.join(sorted(sys.modules)))"
    ran = subprocess.run(
        [sys.executable, "-S", "-c", code], capture_output=True, text=True, check=True
    )
    loaded = set(ran.stdout.split())
    assert "cpushare.seller.agent" in loaded
    assert sorted(loaded & set(NOT_IN_THE_FLEET)) == []
