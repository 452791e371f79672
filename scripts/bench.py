#!/usr/bin/env python3
"""`make bench`: runs every scripts/bench_*.py in turn and prints their figures."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path


def main() -> int:
    failed = 0
    for script in sorted(Path(__file__).parent.glob("bench_*.py")):
        print(f"== {script.name}", flush=True)
        start = time.monotonic()
        code = subprocess.call([sys.executable, str(script)])
        print(
            f"== {script.name}: {time.monotonic() - start:.1f} s"
            + ("" if code == 0 else f", exit status {code}"),
            flush=True,
        )
        failed += code != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
