"""Parsing and validating a job's ELF, in memory-safe code, before the loader sees it.

A job is a static x86-64 ET_EXEC with no interpreter and no dynamic section. Its
loadable segments must lie inside the job window and not share a page; the entry must be
in an executable segment; segments plus stack must fit the memory limit, and what is left
of it becomes the job's heap arena. The stack and the arena live above the window, so
a job's own addresses can never collide with them or with the loader (linked higher).
"""

from __future__ import annotations

import itertools
import struct

from cpushare.jail.model import STACK_BYTES, Limits
from cpushare.record import record

PAGE = 4096
WINDOW_START = 0x10000
WINDOW_END = 0x1000_0000_0000
ARENA_BASE = 0x2000_0000_0000
STACK_TOP = 0x3000_0000_0000
MAX_PROGRAM_HEADERS = 64
MAX_LOAD_SEGMENTS = 16

_ELF_HEADER = struct.Struct("<16sHHIQQQIHHHHHH")
_PROGRAM_HEADER = struct.Struct("<IIQQQQQQ")
_EM_X86_64 = 62
_ET_EXEC = 2
_PT_LOAD, _PT_DYNAMIC, _PT_INTERP, _PT_TLS = 1, 2, 3, 7
_PF_X, _PF_W, _PF_R = 1, 2, 4
_PROT_READ, _PROT_WRITE, _PROT_EXEC = 1, 2, 4


class InvalidProgram(ValueError):
    """The program is not a job the jail can run; the message says what is wrong."""


class MemoryLimitExceeded(InvalidProgram):
    """A well-formed job that needs more memory than its limit allows."""


@record(frozen=True)
class Segment:
    """One loadable segment: where its pages go, its bytes, and their final protection."""

    map_start: int
    map_size: int
    data_start: int
    data: bytes
    prot: int


@record(frozen=True)
class JobImage:
    """A validated job, laid out in memory: all the loader needs and nothing to parse."""

    segments: tuple[Segment, ...]
    entry: int
    stack_base: int
    stack_size: int
    arena_base: int
    arena_size: int


@record(frozen=True)
class _ProgramHeader:
    type: int
    flags: int
    offset: int
    vaddr: int
    filesz: int
    memsz: int


def _page_down(n: int) -> int:
    return n - n % PAGE


def _page_up(n: int) -> int:
    return _page_down(n + PAGE - 1)


def _check_elf_header(program: bytes) -> tuple[int, int, int]:
    """(entry, phoff, phnum) of a 64-bit little-endian x86-64 static executable."""
    if len(program) < 4 or program[:4] != b"\x7fELF":
        raise InvalidProgram("not an ELF file (no \\x7fELF magic)")
    if len(program) < _ELF_HEADER.size:
        raise InvalidProgram(f"truncated ELF header ({len(program)} bytes, need 64)")
    ident, e_type, machine, version, entry, phoff, _, _, _, phentsize, phnum, *_ = (
        _ELF_HEADER.unpack_from(program)
    )
    if ident[4] != 2:
        raise InvalidProgram("not a 64-bit ELF (ELFCLASS64 required)")
    if ident[5] != 1:
        raise InvalidProgram("not a little-endian ELF")
    if ident[6] != 1 or version != 1:
        raise InvalidProgram("unknown ELF version")
    if machine != _EM_X86_64:
        raise InvalidProgram(f"not an x86-64 program (e_machine {machine}, need 62)")
    if e_type != _ET_EXEC:
        raise InvalidProgram(
            f"not a static executable (e_type {e_type}, need ET_EXEC): build it with "
            f"`livecd job build`"
        )
    if phentsize != _PROGRAM_HEADER.size:
        raise InvalidProgram(f"bad program header size {phentsize} (need 56)")
    if not 1 <= phnum <= MAX_PROGRAM_HEADERS:
        raise InvalidProgram(f"bad program header count {phnum} (1..{MAX_PROGRAM_HEADERS})")
    if phoff + phnum * phentsize > len(program):
        raise InvalidProgram("truncated: program headers run past the end of the file")
    return entry, phoff, phnum


def _program_headers(program: bytes, phoff: int, phnum: int) -> list[_ProgramHeader]:
    headers = []
    for i in range(phnum):
        p_type, flags, offset, vaddr, _, filesz, memsz, _ = _PROGRAM_HEADER.unpack_from(
            program, phoff + i * _PROGRAM_HEADER.size
        )
        if p_type == _PT_INTERP:
            raise InvalidProgram("has an interpreter (PT_INTERP): jobs must be static")
        if p_type == _PT_DYNAMIC:
            raise InvalidProgram("has a dynamic section (PT_DYNAMIC): jobs must be static")
        if p_type == _PT_TLS:
            raise InvalidProgram("uses thread-local storage (PT_TLS), which the jail lacks")
        headers.append(_ProgramHeader(p_type, flags, offset, vaddr, filesz, memsz))
    return headers


def _load_segment(program: bytes, ph: _ProgramHeader, index: int) -> Segment:
    where = f"segment {index} ({ph.vaddr:#x}, {ph.memsz:#x} bytes)"
    if ph.filesz > ph.memsz:
        raise InvalidProgram(f"{where}: file size {ph.filesz:#x} exceeds its memory size")
    if ph.offset + ph.filesz > len(program):
        raise InvalidProgram(f"truncated: {where} runs past the end of the file")
    if ph.vaddr < WINDOW_START or ph.vaddr + ph.memsz > WINDOW_END:
        raise InvalidProgram(
            f"{where} lies outside the job window [{WINDOW_START:#x}, {WINDOW_END:#x})"
        )
    prot = (
        (_PROT_READ if ph.flags & _PF_R else 0)
        | (_PROT_WRITE if ph.flags & _PF_W else 0)
        | (_PROT_EXEC if ph.flags & _PF_X else 0)
    )
    map_start = _page_down(ph.vaddr)
    return Segment(
        map_start=map_start,
        map_size=_page_up(ph.vaddr + ph.memsz) - map_start,
        data_start=ph.vaddr,
        data=program[ph.offset : ph.offset + ph.filesz],
        prot=prot,
    )


def _check_no_overlap(segments: list[Segment]) -> None:
    ordered = sorted(segments, key=lambda s: s.map_start)
    for low, high in itertools.pairwise(ordered):
        if low.map_start + low.map_size > high.map_start:
            raise InvalidProgram(
                f"segments at {low.data_start:#x} and {high.data_start:#x} overlap "
                f"(or share a page)"
            )


def _check_entry(entry: int, segments: list[Segment], loads: list[_ProgramHeader]) -> None:
    for segment, ph in zip(segments, loads, strict=True):
        if ph.vaddr <= entry < ph.vaddr + ph.memsz:
            if not segment.prot & _PROT_EXEC:
                raise InvalidProgram(f"entry point {entry:#x} is in a non-executable segment")
            return
    raise InvalidProgram(f"entry point {entry:#x} is outside every loadable segment")


def validate_program(program: bytes, limits: Limits) -> JobImage:
    """The job image of `program`, or InvalidProgram (MemoryLimitExceeded) saying why not."""
    entry, phoff, phnum = _check_elf_header(program)
    loads = [
        ph for ph in _program_headers(program, phoff, phnum) if ph.type == _PT_LOAD and ph.memsz
    ]
    if not loads:
        raise InvalidProgram("no loadable segment")
    if len(loads) > MAX_LOAD_SEGMENTS:
        raise InvalidProgram(f"{len(loads)} loadable segments (at most {MAX_LOAD_SEGMENTS})")
    segments = [_load_segment(program, ph, i) for i, ph in enumerate(loads)]
    _check_no_overlap(segments)
    _check_entry(entry, segments, loads)
    program_bytes = sum(s.map_size for s in segments)
    stack_size = min(STACK_BYTES, _page_down(limits.memory_bytes // 4))
    arena_size = _page_down(limits.memory_bytes - program_bytes - stack_size)
    if arena_size < 0:
        raise MemoryLimitExceeded(
            f"needs {program_bytes + stack_size} bytes (program {program_bytes}, stack "
            f"{stack_size}) but the memory limit is {limits.memory_bytes}"
        )
    return JobImage(
        segments=tuple(segments),
        entry=entry,
        stack_base=STACK_TOP - stack_size,
        stack_size=stack_size,
        arena_base=ARENA_BASE,
        arena_size=arena_size,
    )
