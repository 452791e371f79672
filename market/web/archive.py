"""A batch's results as one tar archive, streamed: each finished job's accepted output
under its input's name, and FAILURES.txt naming every job that failed or did not end
well (its outcome and exit status)."""

from __future__ import annotations

import io
import tarfile
import time
from collections.abc import AsyncIterator

from market.store import Store


class _Sink(io.RawIOBase):
    """Where tarfile writes: the bytes are taken away after every member."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.chunks.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out = b"".join(self.chunks)
        self.chunks.clear()
        return out


def _member(tar: tarfile.TarFile, name: str, data: bytes, mtime: float) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(mtime)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


async def batch_tar(db: Store, batch_id: int) -> AsyncIterator[bytes]:
    """The archive in pieces, one job's output read from the database at a time."""
    sink = _Sink()
    prefix = f"batch-{batch_id}"
    ids = db.reader.execute(
        "SELECT id, input_name, state, outcome, exit_status, finished FROM jobs "
        "WHERE batch_id = ? ORDER BY id",
        (batch_id,),
    ).fetchall()
    failures: list[str] = []
    with tarfile.open(fileobj=sink, mode="w|") as tar:
        for job_id, input_name, state, outcome, exit_status, finished in ids:
            if state == "failed" or outcome not in (None, "ok"):
                failures.append(
                    f"job {job_id} ({input_name}): {state}, outcome {outcome}, "
                    f"exit status {exit_status}"
                )
            if state != "done":
                continue
            row = db.reader.execute(
                "SELECT output FROM results WHERE job_id = ? AND verdict = 'accepted' LIMIT 1",
                (job_id,),
            ).fetchone()
            _member(tar, f"{prefix}/{job_id}-{input_name}.out", bytes(row[0]), finished or 0)
            yield sink.take()
        report = "".join(line + "\n" for line in failures) or "no job failed\n"
        _member(tar, f"{prefix}/FAILURES.txt", report.encode(), time.time())
    yield sink.take()
