"""`python3 -m cpushare.orderscan FILE...`: which of these `.cpu` orders can run.

The live system's service script calls it on the orders it found (built in, or on the
CPUSHARE medium). Each valid order is printed on stdout as `PATH NICE`; each invalid one
gets a `cpushare: event=error what=order` line on stderr (the console) and is skipped, so
that one bad file on a volunteer's stick does not stop the good ones. Exits 1 when no
order is valid.
"""

from __future__ import annotations

import sys
from pathlib import Path

from cpushare.console import emit
from cpushare.order import OrderError, load_order


def scan(paths: list[Path]) -> list[tuple[Path, int]]:
    valid = []
    for path in paths:
        try:
            order = load_order(path)
        except OSError as exc:
            emit(
                "error",
                stream=sys.stderr,
                what="order",
                file=path.name,
                detail=f"cannot read it: {exc.strerror}",
            )
        except OrderError as exc:
            emit("error", stream=sys.stderr, what="order", file=path.name, detail=f"skipped: {exc}")
        else:
            valid.append((path, order.nice))
    return valid


def main(argv: list[str] | None = None) -> int:
    valid = scan([Path(arg) for arg in (sys.argv[1:] if argv is None else argv)])
    for path, nice in valid:
        print(path, nice)
    return 0 if valid else 1


if __name__ == "__main__":
    sys.exit(main())
