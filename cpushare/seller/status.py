"""The seller's status file, read by `/etc/init.d/cpushare status`; written atomically."""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class SellerStatus:
    """What one seller is doing and has done."""

    order: str
    market: str
    pid: int = field(default_factory=os.getpid)
    state: str = "starting"
    job: int | None = None
    jobs_done: int = 0
    cpu_seconds: float = 0.0
    coins: float = 0.0
    last_error: str | None = None
    updated: float = 0.0


class StatusFile:
    """Keeps `<dir>/<order-file-stem>.json` up to date; does nothing without a directory."""

    def __init__(self, directory: Path | None, order_file: Path, status: SellerStatus) -> None:
        self.path = directory / f"{order_file.stem}.json" if directory else None
        self.status = status
        if directory:
            directory.mkdir(parents=True, exist_ok=True)
        self._write()

    def update(self, **changes: Any) -> None:
        self.status = replace(self.status, **changes)
        self._write()

    def _write(self) -> None:
        if self.path is None:
            return
        doc = asdict(replace(self.status, updated=round(time.time(), 3)))
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(doc, f)
                f.write("\n")
            os.replace(tmp, self.path)
        except BaseException:
            os.unlink(tmp)
            raise
