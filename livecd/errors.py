"""User errors: one clear line, a non-zero exit, no traceback."""

from __future__ import annotations


class UserError(Exception):
    """Bad input or a missing prerequisite. The message says what is wrong and what to do."""

    exit_code = 2


class BuildError(UserError):
    """The build cannot go on with these inputs (bad package, kernel, template, overlay)."""


class ToolMissing(UserError):
    """A host program the command needs is not installed."""

    def __init__(self, tool: str, package: str) -> None:
        super().__init__(
            f"{tool} is not installed: run scripts/install-host-packages.sh "
            f"(or apt-get install {package})"
        )
