"""The seller's status file, read by the fleet's watchdog, the status screen and
`/etc/init.d/cpushare status`; written atomically."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from pathlib import Path

from cpushare.record import field, fields, record, replace

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any


def boottime() -> float:
    """Seconds since boot, as /proc/uptime counts them: the clock of every deadline in a
    status file (it never jumps, and the shell and the screen can read it too)."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


@record(frozen=True)
class SellerStatus:
    """What one seller is doing and has done.

    `stale_after` is the boot time by which the seller promises to write again: a seller
    still silent well after it is hung, and the fleet replaces it. `market_seen` is the
    boot time of the market's last answer.
    """

    order: str
    market: str
    account: str = ""
    pid: int = field(default_factory=os.getpid)
    cpu: int | None = None
    nice: int = 19
    state: str = "starting"
    job: int | None = None
    jobs_done: int = 0
    cpu_seconds: float = 0.0
    coins: float = 0.0
    last_error: str | None = None
    updated: float = 0.0
    stale_after: float = 0.0
    market_seen: float | None = None


_FIELDS = tuple(f.name for f in fields(SellerStatus))


class StatusFile:
    """Keeps `<dir>/<order-file-stem>.json` up to date; does nothing without a directory."""

    def __init__(self, directory: Path | None, order_file: Path, status: SellerStatus) -> None:
        self.path = directory / f"{order_file.stem}.json" if directory else None
        self.status = status
        # A seller's courier thread counts results while its main thread changes state.
        self.lock = threading.RLock()
        self._noted: dict[str, Any] = {}
        if directory:
            directory.mkdir(parents=True, exist_ok=True)
        self._write()

    def update(self, **changes: Any) -> None:
        with self.lock:
            if self._noted:
                changes = {**self._noted, **changes}
                self._noted = {}
            self.status = replace(self.status, **changes)
            self._write()

    def note(self, **changes: Any) -> None:
        """Changes kept for the next update, which writes them (`status` shows them from
        then on): the cheapest record of a change that need not be written now."""
        with self.lock:
            self._noted.update(changes)

    def value(self, name: str) -> Any:
        """A field as the next write will have it: noted, or as last updated."""
        with self.lock:
            return self._noted[name] if name in self._noted else getattr(self.status, name)

    def _write(self) -> None:
        """The status in one write to a file of this process's own (under the lock),
        renamed over the last: a seller writes it at least once per job, so it costs one
        open, write and rename, no temporary name drawn nor JSON written piecemeal."""
        if self.path is None:
            return
        doc = {name: getattr(self.status, name) for name in _FIELDS}
        doc["updated"] = round(time.time(), 3)
        data = (json.dumps(doc) + "\n").encode()
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
        except BaseException:
            # SIGTERM (SystemExit) may land just after the rename, when `tmp` is gone: the
            # clean-up must not replace that exception, or the seller keeps its lease.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise


def read_status(path: Path) -> SellerStatus | None:
    """A status file's contents, or None when it is missing or not one (yet)."""
    try:
        doc = json.loads(path.read_text())
        known = {f.name for f in fields(SellerStatus)}
        return SellerStatus(**{k: v for k, v in doc.items() if k in known})
    except (OSError, ValueError, TypeError):
        return None


def read_statuses(directory: Path) -> dict[str, SellerStatus]:
    """Every seller's status in `directory`, by file stem."""
    found = {p.stem: read_status(p) for p in sorted(directory.glob("*.json"))}
    return {name: status for name, status in found.items() if status is not None}


def format_table(statuses: dict[str, SellerStatus]) -> str:
    """One line per seller: the `status` command's output."""
    lines = [f"{'seller':<20} {'state':<9} {'job':>7} {'done':>5} {'cpu s':>9} {'coins':>9}"]
    for name, s in statuses.items():
        job = "-" if s.job is None else str(s.job)
        lines.append(
            f"{name:<20} {s.state:<9} {job:>7} {s.jobs_done:>5} "
            f"{s.cpu_seconds:>9.1f} {s.coins:>9.3f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """`python3 -m cpushare.seller.status DIR`: each seller's state, job and earnings."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python3 -m cpushare.seller.status STATUS-DIR", file=sys.stderr)
        return 2
    statuses = read_statuses(Path(args[0]))
    if not statuses:
        print("cpushare: no seller has reported yet")
        return 3
    print(format_table(statuses))
    return 0


if __name__ == "__main__":
    sys.exit(main())
