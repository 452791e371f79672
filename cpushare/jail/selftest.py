"""`python3 -m cpushare.jail.selftest`: the seccomp check as a command, for boot and humans.

Prints one console line, `cpushare: event=seccomp status=verified`, or `status=failed`
with `reason=...`, and exits 0 or 1. `--fail`, or CPUSHARE_SELFTEST=fail in the
environment, makes the check fail on purpose (see cpushare.jail.check).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from cpushare.console import emit
from cpushare.jail.check import self_test


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m cpushare.jail.selftest",
        description="Check that strict seccomp works here; print the cpushare: seccomp line.",
    )
    parser.add_argument("--loader", type=Path, help="jail loader to use")
    parser.add_argument("--job", type=Path, help="self-test job to use")
    parser.add_argument(
        "--fail",
        action="store_true",
        default=os.environ.get("CPUSHARE_SELFTEST") == "fail",
        help="fail on purpose (also CPUSHARE_SELFTEST=fail), to test what follows a failure",
    )
    args = parser.parse_args(argv)
    report = self_test(loader=args.loader, job=args.job, fail_on_purpose=args.fail)
    if report.ok:
        emit("seccomp", status="verified")
        return 0
    emit("seccomp", status="failed", reason="; ".join(report.failures))
    return 1


if __name__ == "__main__":
    sys.exit(main())
