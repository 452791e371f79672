"""Rendering `templates/` with Jinja: one build context, StrictUndefined.

`templates/rootfs/X.j2` becomes `/X` in the live system, `templates/boot/X.j2` a file of
the boot tree. A file whose rendering starts with `#!` is made executable. A template
that uses an undefined variable stops the build with the template and the variable named.
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from livecd.errors import BuildError

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


@dataclass(frozen=True)
class Rendered:
    path: str  # relative, without .j2
    data: bytes
    mode: int


def environment(root: Path = TEMPLATES) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(root),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )


def render(name: str, context: Mapping[str, Any], root: Path = TEMPLATES) -> str:
    """Render one template (path relative to `root`), naming it in any error."""
    env = environment(root)
    try:
        return env.get_template(name).render(**context)
    except jinja2.UndefinedError as exc:
        line = _template_line(exc, name)
        raise BuildError(
            f"template {name}{line}: {exc.message}: define it or fix the name"
        ) from None
    except jinja2.TemplateSyntaxError as exc:
        raise BuildError(f"template {exc.filename or name}:{exc.lineno}: {exc.message}") from None
    except jinja2.TemplateNotFound:
        raise BuildError(f"template {name} not found in {root}") from None


def _template_line(exc: BaseException, name: str) -> str:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.endswith(name)]
    return f":{frames[-1].lineno}" if frames else ""


def render_tree(subdir: str, context: Mapping[str, Any], root: Path = TEMPLATES) -> list[Rendered]:
    """Every `*.j2` under `root/subdir`, rendered, sorted by path."""
    base = root / subdir
    if not base.is_dir():
        raise BuildError(f"template folder {base} is missing: restore it or pass --templates")
    out = []
    for src in sorted(base.rglob("*.j2")):
        rel = src.relative_to(root).as_posix()
        text = render(rel, context, root)
        mode = 0o755 if text.startswith("#!") else 0o644
        out.append(Rendered(src.relative_to(base).as_posix()[: -len(".j2")], text.encode(), mode))
    return out
