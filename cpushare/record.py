"""Records: classes of named fields, declared like dataclasses, without `dataclasses`.

The guest declares its value types with `@record` (`@record(frozen=True)`,
`@record(eq=False)`), `field(...)`, and uses `fields()` and `replace()`, as it would
with the standard library's dataclasses; the generated `__init__` is the same code. The
standard module imports `inspect` (with `ast`, `dis`, `tokenize`), about 2.5 MiB of every
interpreter's memory on the live CD, where the whole system has 40 MiB; this module
imports nothing. What it does not do, the guest does not use: inheritance of fields,
ordering, slots, keyword-only fields, `ClassVar`s.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import CodeType, FunctionType

# typing.TYPE_CHECKING, without importing typing (the type checker reads what it guards):
# typing is about 0.5 MiB of an interpreter's memory, and the fleet needs none of it.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TypeVar, dataclass_transform, overload

    T = TypeVar("T")
    C = TypeVar("C", bound=type)
else:

    def dataclass_transform(**_: object) -> Callable[[Any], Any]:
        return lambda f: f


_NONE: Any = object()  # no default given


class FrozenInstanceError(AttributeError):
    """An assignment to a field of a frozen record."""


class Field:
    """One field of a record: its name, default (or default factory), repr and metadata."""

    __slots__ = ("default", "default_factory", "metadata", "name", "repr")

    def __init__(
        self,
        default: Any,
        default_factory: Callable[[], Any] | None,
        repr: bool,
        metadata: Mapping[str, Any] | None,
    ) -> None:
        self.name = ""
        self.default = default
        self.default_factory = default_factory
        self.repr = repr
        self.metadata: Mapping[str, Any] = {} if metadata is None else metadata

    @property
    def has_default(self) -> bool:
        return self.default is not _NONE or self.default_factory is not None


if TYPE_CHECKING:

    @overload
    def field(*, default: T, repr: bool = True, metadata: Mapping[str, Any] | None = None) -> T: ...
    @overload
    def field(
        *,
        default_factory: Callable[[], T],
        repr: bool = True,
        metadata: Mapping[str, Any] | None = None,
    ) -> T: ...
    @overload
    def field(*, repr: bool = True, metadata: Mapping[str, Any] | None = None) -> Any: ...


def field(
    *,
    default: Any = _NONE,
    default_factory: Callable[[], Any] | None = None,
    repr: bool = True,
    metadata: Mapping[str, Any] | None = None,
) -> Any:
    """A field's default (or its factory), whether repr shows it, and free metadata."""
    if default is not _NONE and default_factory is not None:
        raise ValueError("a field takes a default or a default factory, not both")
    return Field(default, default_factory, repr, metadata)


def fields(record_or_class: Any) -> tuple[Field, ...]:
    """The fields of a record class (or of one of its instances), in declaration order."""
    found: tuple[Field, ...] | None = getattr(record_or_class, "__record_fields__", None)
    if found is None:
        raise TypeError(f"{record_or_class!r} is not a record")
    return found


def replace(obj: T, /, **changes: Any) -> T:
    """A copy of the record `obj` with the fields in `changes` set to new values."""
    for f in fields(obj):
        if f.name not in changes:
            changes[f.name] = getattr(obj, f.name)
    made: T = type(obj)(**changes)
    return made


if TYPE_CHECKING:

    @overload
    def record(cls: C, /) -> C: ...
    @overload
    def record(*, frozen: bool = False, eq: bool = True) -> Callable[[C], C]: ...


@dataclass_transform(field_specifiers=(field,))
def record(cls: Any = None, /, *, frozen: bool = False, eq: bool = True) -> Any:
    """Give `cls` an `__init__` of its annotated fields, a repr and (with `eq`) equality
    by value; `frozen`: no assignment after `__init__`, and a hash by value."""

    def wrap(cls: C) -> C:
        _make(cls, frozen, eq)
        return cls

    return wrap if cls is None else wrap(cls)


def _make(cls: type, frozen: bool, eq: bool) -> None:
    own = cls.__dict__.get("__annotations__", {})  # noqa: RUF063 (inspect: what this avoids)
    found: list[Field] = []
    for name in own:
        value = cls.__dict__.get(name, _NONE)
        f = value if isinstance(value, Field) else Field(value, None, True, None)
        f.name = name
        if f.default is _NONE and name in cls.__dict__:
            delattr(cls, name)  # a field() without a default: no class attribute
        elif f.default is not _NONE:
            setattr(cls, name, f.default)
        if found and found[-1].has_default and not f.has_default:
            raise TypeError(f"{cls.__name__}: field {name} without a default follows one with")
        found.append(f)
    names = tuple(f.name for f in found)
    cls.__record_fields__ = tuple(found)  # type: ignore[attr-defined]
    cls.__init__ = _init(cls, found, frozen)  # type: ignore[misc]
    shown = tuple(f.name for f in found if f.repr)

    def __repr__(self: Any) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in shown)
        return f"{type(self).__qualname__}({inner})"

    cls.__repr__ = __repr__  # type: ignore[assignment, method-assign]
    if eq:

        def __eq__(self: Any, other: object) -> bool:
            if other.__class__ is not self.__class__:
                return NotImplemented
            return all(getattr(self, n) == getattr(other, n) for n in names)

        cls.__eq__ = __eq__  # type: ignore[assignment, method-assign]
        if frozen:

            def __hash__(self: Any) -> int:
                return hash(tuple(getattr(self, n) for n in names))

            cls.__hash__ = __hash__  # type: ignore[assignment, method-assign]
        else:
            cls.__hash__ = None  # type: ignore[assignment]
    if frozen:

        def __setattr__(self: Any, name: str, value: Any) -> None:
            raise FrozenInstanceError(f"cannot assign to field {name!r}")

        def __delattr__(self: Any, name: str) -> None:
            raise FrozenInstanceError(f"cannot delete field {name!r}")

        cls.__setattr__ = __setattr__  # type: ignore[assignment, method-assign]
        cls.__delattr__ = __delattr__  # type: ignore[assignment, method-assign]


# Compiled __init__ code by shape: (fields, the factories' places, frozen, __post_init__).
_TEMPLATES: dict[tuple[int, tuple[int, ...], bool, bool], CodeType] = {}


def _init(cls: type, found: list[Field], frozen: bool) -> Callable[..., None]:
    """`__init__` compiled from source, as dataclasses does: as fast as one written out.
    The source of a shape is compiled once, its fields named by placeholders that each
    record's names then replace in a copy of the code (compiling is most of the time a
    record costs at import: under emulation about 2 ms each, on the fleet's way to its
    first sale)."""
    factories = tuple(i for i, f in enumerate(found) if f.default_factory is not None)
    key = (len(found), factories, frozen, hasattr(cls, "__post_init__"))
    template = _TEMPLATES.get(key)
    if template is None:
        template = _TEMPLATES[key] = _template(*key)
    names = {_placeholder(i): f.name for i, f in enumerate(found)}
    code = template.replace(
        co_varnames=tuple(names.get(n, n) for n in template.co_varnames),
        co_names=tuple(names.get(n, n) for n in template.co_names),
        co_consts=tuple(names.get(c, c) if type(c) is str else c for c in template.co_consts),
        co_qualname=f"{cls.__qualname__}.__init__",
    )
    space: dict[str, Any] = {"_NONE": _NONE, "_set": object.__setattr__}
    for i in factories:
        space[f"_factory{i}"] = found[i].default_factory
    defaults = tuple(_NONE if f.default_factory is not None else f.default for f in found)
    defaults = defaults[sum(not f.has_default for f in found) :]
    init: Callable[..., None] = FunctionType(code, space, "__init__", defaults or None)
    return init


def _placeholder(i: int) -> str:
    return f"_field_{i}_"


def _template(count: int, factories: tuple[int, ...], frozen: bool, post_init: bool) -> CodeType:
    """The code of `__init__` for a shape, its fields named by placeholders (a record's
    defaults are given to the function, not written in its source)."""
    params = ["self"]
    body = []
    for i in range(count):
        name = _placeholder(i)
        params.append(name)
        if i in factories:
            body.append(f"if {name} is _NONE: {name} = _factory{i}()")
        if frozen:
            body.append(f"_set(self, {name!r}, {name})")
        else:
            body.append(f"self.{name} = {name}")
    if post_init:
        body.append("self.__post_init__()")
    text = f"def __init__({', '.join(params)}):\n" + "".join(
        f" {line}\n" for line in body or ["pass"]
    )
    space: dict[str, Any] = {}
    exec(text, space)
    code: CodeType = space["__init__"].__code__
    return code
