"""The program cache keeps each program's prepared form: validated once per memory limit,
reused for every job of it, never for other bytes."""

from __future__ import annotations

import hashlib

from cpushare.jail import JobImage, JobResult, Limits, Outcome, validate_program
from cpushare.seller.programs import PREPARED_PER_PROGRAM, ProgramCache

LIMITS = Limits(memory_bytes=4 << 20)


def _kept(cache: ProgramCache, program: bytes) -> str:
    sha256 = hashlib.sha256(program).hexdigest()
    cache.put(sha256, program)
    return sha256


def test_a_kept_program_is_validated_once_per_memory_limit(spin: bytes) -> None:
    cache = ProgramCache()
    sha256 = _kept(cache, spin)
    first = cache.prepared(sha256, spin, LIMITS)
    assert isinstance(first, JobImage)
    # The same image again (validate_program makes a new one each time it runs).
    assert cache.prepared(sha256, spin, Limits(memory_bytes=4 << 20, cpu_seconds=7)) is first
    larger = cache.prepared(sha256, spin, Limits(memory_bytes=8 << 20))
    assert isinstance(larger, JobImage) and larger is not first
    assert larger.arena_size > first.arena_size


def test_other_bytes_are_validated_afresh_and_refused(spin: bytes) -> None:
    cache = ProgramCache()
    sha256 = _kept(cache, spin)
    assert isinstance(cache.prepared(sha256, spin, LIMITS), JobImage)
    # A changed program is another sha256: not the prepared one, and refused as it is.
    changed = b"\x7fELF" + spin[4:16] + b"\x03\x00" + spin[18:]  # e_type ET_DYN
    refused = cache.prepared(_kept(cache, changed), changed, LIMITS)
    assert isinstance(refused, JobResult) and refused.outcome is Outcome.INVALID
    # Bytes other than the kept ones, even under the kept sha256, get no prepared form.
    copy = bytes(bytearray(changed))
    again = cache.prepared(sha256, copy, LIMITS)
    assert isinstance(again, JobResult) and again.outcome is Outcome.INVALID
    assert cache.prepared(sha256, spin, LIMITS) is not again


def test_prepared_forms_count_against_the_capacity(spin: bytes) -> None:
    segments = sum(len(s.data) for s in validate_program(spin, LIMITS).segments)
    assert segments > 0
    cache = ProgramCache(capacity=len(spin) + segments - 1)
    sha256 = _kept(cache, spin)
    # The image holds a copy of the program's segments: program and image do not fit.
    assert isinstance(cache.prepared(sha256, spin, LIMITS), JobImage)
    assert cache.get(sha256) is None
    cache = ProgramCache(capacity=len(spin) + segments)
    sha256 = _kept(cache, spin)
    assert isinstance(cache.prepared(sha256, spin, LIMITS), JobImage)
    assert cache.get(sha256) is spin


def test_few_prepared_forms_are_kept_per_program(spin: bytes) -> None:
    cache = ProgramCache()
    sha256 = _kept(cache, spin)
    sizes = [(4 + i) << 20 for i in range(PREPARED_PER_PROGRAM + 1)]
    images = [cache.prepared(sha256, spin, Limits(memory_bytes=size)) for size in sizes]
    # The first one was dropped; the last ones are kept.
    assert cache.prepared(sha256, spin, Limits(memory_bytes=sizes[0])) is not images[0]
    assert cache.prepared(sha256, spin, Limits(memory_bytes=sizes[-1])) is images[-1]
