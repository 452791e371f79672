"""The programs a seller keeps in memory between jobs, by sha256 (the live system has no
disk to cache on), each with its prepared forms: validated and laid out once per memory
limit, not again for every job of it. The fleet sizes the cache from its memory plan
(cpushare.seller.plan): it counts against the seller's own reserve, the prepared forms'
bytes (a copy of the program's segments) included."""

from __future__ import annotations

from collections import OrderedDict

from cpushare.jail import JobImage, JobResult, Limits, prepare

# A seller started alone, outside any plan, keeps this much.
PROGRAM_CACHE_BYTES = 64 << 20
# Prepared forms kept per program (one per memory limit its jobs asked for), newest last.
PREPARED_PER_PROGRAM = 4


class _Entry:
    __slots__ = ("prepared", "program")

    def __init__(self, program: bytes) -> None:
        self.program = program
        self.prepared: OrderedDict[int, JobImage | JobResult] = OrderedDict()

    def size(self) -> int:
        images = (p for p in self.prepared.values() if isinstance(p, JobImage))
        return len(self.program) + sum(len(s.data) for i in images for s in i.segments)


class ProgramCache:
    """Programs by sha256, least recently used dropped first."""

    def __init__(self, capacity: int = PROGRAM_CACHE_BYTES) -> None:
        self.capacity = capacity
        self._programs: OrderedDict[str, _Entry] = OrderedDict()

    def get(self, sha256: str) -> bytes | None:
        entry = self._programs.get(sha256)
        if entry is None:
            return None
        self._programs.move_to_end(sha256)
        return entry.program

    def put(self, sha256: str, program: bytes) -> None:
        """Keep `program`, whose sha256 the caller checked."""
        self._programs[sha256] = _Entry(program)
        self._shrink()

    def prepared(self, sha256: str, program: bytes, limits: Limits) -> JobImage | JobResult:
        """`program` (under `sha256`) prepared for jobs under `limits`
        (cpushare.jail.prepare): done once per memory limit while the program is kept."""
        entry = self._programs.get(sha256)
        if entry is None or entry.program is not program:
            return prepare(program, limits)  # not kept (or another copy): nothing to reuse
        found = entry.prepared.get(limits.memory_bytes)
        if found is None:
            found = entry.prepared[limits.memory_bytes] = prepare(program, limits)
            while len(entry.prepared) > PREPARED_PER_PROGRAM:
                entry.prepared.popitem(last=False)
            self._shrink()
        else:
            entry.prepared.move_to_end(limits.memory_bytes)
        return found

    def _shrink(self) -> None:
        while sum(e.size() for e in self._programs.values()) > self.capacity:
            self._programs.popitem(last=False)
