"""The ELF validator: malformed programs are refused with a reason, never crash it."""

from __future__ import annotations

import itertools
import struct
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cpushare.jail import (
    InvalidProgram,
    JobImage,
    Limits,
    MemoryLimitExceeded,
    Outcome,
    run_job,
    validate_program,
)
from cpushare.jail.elf import PAGE, WINDOW_END, WINDOW_START
from cpushare.jail.model import STACK_BYTES

LIMITS = Limits(memory_bytes=64 << 20)
PT_LOAD, PT_DYNAMIC, PT_INTERP, PT_TLS, PT_GNU_STACK = 1, 2, 3, 7, 0x6474E551
R, W, X = 4, 2, 1
U64 = st.integers(0, 2**64 - 1)


@dataclass
class Ph:
    """One program header; data is placed in the file and its offset filled in."""

    vaddr: int
    memsz: int
    flags: int = R | X
    data: bytes = b"\x90"
    type: int = PT_LOAD
    filesz: int | None = None
    offset: int | None = None


def make_elf(
    phs: list[Ph],
    entry: int = 0x400000,
    *,
    klass: int = 2,
    endian: int = 1,
    machine: int = 62,
    e_type: int = 2,
    phentsize: int = 56,
    phnum: int | None = None,
) -> bytes:
    """A 64-bit ELF with these program headers, their data after them."""
    data_at = 64 + 56 * len(phs)
    headers, blobs = [], []
    for ph in phs:
        offset = data_at if ph.offset is None else ph.offset
        filesz = len(ph.data) if ph.filesz is None else ph.filesz
        headers.append(
            struct.pack(
                "<IIQQQQQQ", ph.type, ph.flags, offset, ph.vaddr, ph.vaddr, filesz, ph.memsz, PAGE
            )
        )
        blobs.append(ph.data)
        data_at += len(ph.data)
    ident = b"\x7fELF" + bytes([klass, endian, 1]) + bytes(9)
    count = len(phs) if phnum is None else phnum
    fields = (e_type, machine, 1, entry, 64, 0, 0, 64, phentsize, count, 64, 0, 0)
    header = struct.pack("<16sHHIQQQIHHHHHH", ident, *fields)
    return header + b"".join(headers) + b"".join(blobs)


def text(vaddr: int = 0x400000, memsz: int = 0x100) -> Ph:
    return Ph(vaddr, memsz)


GOOD = make_elf([text(), Ph(0x401000, 0x2000, R | W, b"data")])

MALFORMED = {
    "empty": (b"", "not an ELF"),
    "not an ELF": (b"#!/bin/sh\necho hi\n", "not an ELF"),
    "truncated header": (GOOD[:40], "truncated ELF header"),
    "truncated program headers": (GOOD[:100], "program headers run past"),
    "truncated segment": (
        make_elf([Ph(0x400000, 0x1000, data=b"\x90" * 64)])[:-10],
        "runs past the end",
    ),
    "wrong class": (make_elf([text()], klass=1), "64-bit"),
    "big endian": (make_elf([text()], endian=2), "little-endian"),
    "wrong machine": (make_elf([text()], machine=3), "x86-64"),
    "shared object": (make_elf([text()], e_type=3), "static executable"),
    "PT_INTERP": (make_elf([text(), Ph(0, 0, R, b"/lib/ld.so\0", PT_INTERP)]), "interpreter"),
    "PT_DYNAMIC": (make_elf([text(), Ph(0x402000, 0x10, R | W, b"", PT_DYNAMIC)]), "dynamic"),
    "PT_TLS": (make_elf([text(), Ph(0x402000, 0x10, R, b"", PT_TLS)]), "thread-local"),
    "overlapping segments": (make_elf([text(), Ph(0x400080, 0x100, R)]), "overlap"),
    "segments sharing a page": (make_elf([text(), Ph(0x400800, 0x10, R | W)]), "overlap"),
    "entry outside any segment": (make_elf([text()], entry=0x500000), "outside every"),
    "entry in data": (make_elf([text(), Ph(0x401000, 0x10, R | W)], entry=0x401000), "non-exec"),
    "segment below the window": (make_elf([text(0x1000)], entry=0x1000), "outside the job window"),
    "segment above the window": (
        make_elf([text(WINDOW_END)], entry=WINDOW_END),
        "outside the job window",
    ),
    "segment across the window end": (
        make_elf([text(WINDOW_END - PAGE, 2 * PAGE)], entry=WINDOW_END - PAGE),
        "outside the job window",
    ),
    "huge p_memsz": (make_elf([text(0x400000, 2**64 - 1)]), "outside the job window"),
    "file size over memory size": (make_elf([Ph(0x400000, 0x10, data=b"\x90" * 32)]), "exceeds"),
    "offset past the end": (make_elf([Ph(0x400000, 0x10, offset=2**40)]), "past the end"),
    "no loadable segment": (make_elf([Ph(0, 0, R | W, b"", PT_GNU_STACK)]), "no loadable"),
    "too many segments": (
        make_elf([Ph(0x400000 + i * PAGE, 0x10) for i in range(17)]),
        "at most 16",
    ),
    "bad program header size": (make_elf([text()], phentsize=32), "program header size"),
    "no program headers": (make_elf([text()], phnum=0), "program header count"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_elf_is_refused_with_its_reason(case: str) -> None:
    program, reason = MALFORMED[case]
    with pytest.raises(InvalidProgram, match=reason):
        validate_program(program, LIMITS)


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_elf_runs_as_invalid(case: str) -> None:
    result = run_job(MALFORMED[case][0], b"", LIMITS)
    assert result.outcome is Outcome.INVALID
    assert result.output == b""


def test_memory_over_the_limit_is_refused_before_running() -> None:
    program = make_elf([text(), Ph(0x401000, 1 << 40, R | W, b"")])
    with pytest.raises(MemoryLimitExceeded, match="memory limit"):
        validate_program(program, LIMITS)
    assert run_job(program, b"", LIMITS).outcome is Outcome.MEMORY_LIMIT


def test_the_arena_is_what_the_limit_leaves(jobs: dict[str, bytes]) -> None:
    image = validate_program(jobs["selftest"], LIMITS)
    program_bytes = sum(s.map_size for s in image.segments)
    assert image.arena_size == LIMITS.memory_bytes - program_bytes - STACK_BYTES
    assert [s.prot for s in image.segments] == [5, 1, 3]  # r-x, r--, rw- from job.ld
    assert image.stack_size == STACK_BYTES


def test_a_small_limit_gets_a_quarter_of_it_as_stack(jobs: dict[str, bytes]) -> None:
    image = validate_program(jobs["selftest"], Limits(memory_bytes=2 << 20))
    assert image.stack_size == 512 << 10
    assert image.arena_size == (2 << 20) - (512 << 10) - sum(s.map_size for s in image.segments)


def test_a_valid_handmade_elf_is_accepted() -> None:
    image = validate_program(GOOD, LIMITS)
    assert image.entry == 0x400000
    assert [(s.map_start, s.map_size, s.data) for s in image.segments] == [
        (0x400000, PAGE, b"\x90"),
        (0x401000, 2 * PAGE, b"data"),
    ]


def assert_sound(image: JobImage, limits: Limits) -> None:
    """What the loader relies on, for any program the validator accepts."""
    spans = sorted((s.map_start, s.map_start + s.map_size) for s in image.segments)
    for start, end in spans:
        assert WINDOW_START <= start < end <= WINDOW_END
        assert start % PAGE == end % PAGE == 0
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end <= start
    for s in image.segments:
        assert s.map_start <= s.data_start
        assert s.data_start + len(s.data) <= s.map_start + s.map_size
    assert any(
        s.prot & 4 and s.map_start <= image.entry < s.map_start + s.map_size for s in image.segments
    )
    total = sum(s.map_size for s in image.segments) + image.stack_size + image.arena_size
    assert total <= limits.memory_bytes


def check(program: bytes) -> None:
    try:
        image = validate_program(program, LIMITS)
    except InvalidProgram:
        return
    assert_sound(image, LIMITS)


@given(st.binary(max_size=600))
def test_fuzz_random_bytes(program: bytes) -> None:
    check(program)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(edits=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), min_size=1, max_size=12))
def test_fuzz_mutated_headers_of_a_real_job(
    jobs: dict[str, bytes], edits: list[tuple[int, int]]
) -> None:
    program = bytearray(jobs["selftest"])
    for at, byte in edits:
        program[at] = byte
    check(bytes(program))


@st.composite
def elf_programs(draw: st.DrawFn) -> bytes:
    interesting = st.one_of(
        U64,
        st.integers(0, 0x500000),
        st.sampled_from([0, 1, PAGE - 1, PAGE, WINDOW_START, WINDOW_END - 1, WINDOW_END]),
    )
    phs = draw(
        st.lists(
            st.builds(
                Ph,
                vaddr=interesting,
                memsz=interesting,
                flags=st.integers(0, 7),
                data=st.binary(max_size=32),
                type=st.sampled_from([PT_LOAD, PT_LOAD, PT_GNU_STACK, PT_TLS, 0, 99]),
                filesz=st.none() | interesting,
                offset=st.none() | interesting,
            ),
            max_size=5,
        )
    )
    return make_elf(phs, entry=draw(interesting), e_type=draw(st.sampled_from([2, 2, 3])))


@settings(max_examples=400)
@given(elf_programs())
def test_fuzz_structured_program_headers(program: bytes) -> None:
    check(program)
