"""The two kinds of failure: a user's (one clear line, a non-zero exit, no traceback) and
the program's own (a bug: one line saying so, the traceback only under -v). Both are
declared with the byte formats (`diskformats.errors`), so that the builder catches the
formats' errors as its own; the builder adds its kinds here."""

from __future__ import annotations

from diskformats.errors import InternalError, ToolMissing, UserError

__all__ = ["BuildError", "InternalError", "ToolMissing", "UserError"]


class BuildError(UserError):
    """The build cannot go on with these inputs (bad package, kernel, template, overlay)."""
