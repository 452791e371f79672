"""The programs a seller keeps in memory between jobs, by sha256 (the live system has no
disk to cache on). The fleet sizes the cache from its memory plan (cpushare.seller.plan):
it counts against the seller's own reserve."""

from __future__ import annotations

from collections import OrderedDict

# A seller started alone, outside any plan, keeps this much.
PROGRAM_CACHE_BYTES = 64 << 20


class ProgramCache:
    """Programs by sha256, least recently used dropped first."""

    def __init__(self, capacity: int = PROGRAM_CACHE_BYTES) -> None:
        self.capacity = capacity
        self._programs: OrderedDict[str, bytes] = OrderedDict()

    def get(self, sha256: str) -> bytes | None:
        program = self._programs.get(sha256)
        if program is not None:
            self._programs.move_to_end(sha256)
        return program

    def put(self, sha256: str, program: bytes) -> None:
        self._programs[sha256] = program
        while sum(len(p) for p in self._programs.values()) > self.capacity:
            self._programs.popitem(last=False)
