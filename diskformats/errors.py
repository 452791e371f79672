"""The two kinds of failure, shared by the builder and the market: a user's (one clear line,
no traceback) and the program's own (a bug: one line saying so). `livecd.errors` adds the
builder's own kinds; the market turns these into refusals."""

from __future__ import annotations


class UserError(Exception):
    """Bad input or a missing prerequisite. The message says what is wrong and what to do."""

    exit_code = 2


class ToolMissing(UserError):
    """A host program the command needs is not installed."""

    def __init__(self, tool: str, package: str) -> None:
        super().__init__(
            f"{tool} is not installed: run scripts/install-host-packages.sh "
            f"(or apt-get install {package})"
        )


class InternalError(Exception):
    """A broken promise inside the program (e.g. a format writer handed data it cannot
    encode by the program's own code): a bug to report, not something the user can fix."""

    exit_code = 70  # EX_SOFTWARE
