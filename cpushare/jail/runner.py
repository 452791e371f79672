"""Running a job in the jail: spawn the loader, collect output, enforce the clock, classify.

The parent does only what the child cannot do for itself: it enforces the wall clock
and the output cap (killing the job), reaps it with its rusage, and names the outcome.
Everything done to the child before the job starts (nice, limits, identity, seccomp) is
the loader's work, so spawning needs no preexec_fn: posix_spawn, no fork of Python.

An installed loader is setuid root (mode 4750 root:cpushare): a seller runs its jobs as
the jobs user, the owner of JOB_IDENTITY, and the pid it spawns is the loader's stand-in,
a process of its own uid whose death kills the job and whose end mirrors the job's.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import re
import select
import signal
import stat
import time
from collections.abc import Iterator
from pathlib import Path

from cpushare.jail.control import encode_control
from cpushare.jail.elf import InvalidProgram, JobImage, MemoryLimitExceeded, validate_program
from cpushare.jail.loader import find_loader
from cpushare.jail.model import JailError, JobResult, Limits, Outcome
from cpushare.record import record

NOBODY = 65534
# Its owner and group are the jobs identity of a setuid loader (read there, not here).
JOB_IDENTITY = Path("/usr/lib/cpushare/job-identity")
# A job's output is read FIRST_READ bytes at first, then OUTPUT_CHUNK at a time once a
# read fills its size: a read's buffer is allocated whole before the read, and the
# sellers' malloc maps every block of 128 KiB or more afresh (MALLOC_MMAP_THRESHOLD_,
# /etc/init.d/cpushare), so a 1 MiB buffer for a few KB of output, and another for the
# end of the output, cost every job two mmaps and munmaps.
_FIRST_READ = 64 << 10
_OUTPUT_CHUNK = 1 << 20
_PIPE_SIZE = 1 << 20
_CHILD_FDS = 4  # 0 input, 1 output, 2 loader diagnostics, 3 control
_DEFAULT_SIGNALS = frozenset(signal.valid_signals()) - {signal.SIGKILL, signal.SIGSTOP}
_DIAGNOSTIC = re.compile(rb"jail-loader: step=(\S+) errno=(\d+)")


@record(frozen=True)
class RunningJob:
    """A job started by `spawn`; `finish` collects it. The fds belong to the parent."""

    pid: int
    output_fd: int
    diagnostics_fd: int
    started: float
    limits: Limits


def _memfd(name: str, *pieces: bytes) -> int:
    """An anonymous in-memory file holding `pieces` one after another (each written as it
    is, not joined into one more copy), positioned at its start."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    try:
        for data in pieces:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def input_file(data: bytes) -> Iterator[int]:
    """A job's input as a file descriptor: reads never block, and no file is left behind."""
    fd = _memfd("cpushare-job-input", data)
    try:
        yield fd
    finally:
        os.close(fd)


def _identity(loader: Path) -> tuple[int, int]:
    """Who the job runs as: nobody when we are root; the jobs identity through a setuid
    root loader (which refuses any other); else ourselves (nothing to drop)."""
    if os.geteuid() == 0:
        return NOBODY, NOBODY
    try:
        program = loader.stat()
        if program.st_mode & stat.S_ISUID and program.st_uid == 0:
            owner = JOB_IDENTITY.stat()
            return owner.st_uid, owner.st_gid
    except OSError:
        pass  # the loader says what is missing, at its start
    return os.getuid(), os.getgid()


@record(frozen=True)
class Jail:
    """A loader and the identity its jobs run as, looked up once: a seller runs every job
    of its life through the same ones."""

    loader: Path
    uid: int
    gid: int

    @classmethod
    def find(cls, loader: Path | None = None) -> Jail:
        """`loader`, or the one `find_loader` names, and who its jobs run as."""
        loader = loader or find_loader()
        return cls(loader, *_identity(loader))


def spawn(
    image: JobImage,
    stdin: int | None,
    limits: Limits,
    *,
    loader: Path,
    identity: tuple[int, int] | None = None,
    input: bytes = b"",
) -> RunningJob:
    """Start the loader on `image`, with `stdin` as the job's fd 0 (None: the job reads
    `input`, see below). Does not wait. `identity`: the (uid, gid) the loader's jobs run
    as, if known (`Jail`).

    Without `stdin`, the input follows the control stream in the control's own in-memory
    file, which is both the loader's fd 3 and the job's fd 0: one open file, one offset.
    The loader reads its control exactly (its header says how much), so the job, which
    can neither seek nor stat, reads from where the loader stopped: its input, then the
    end of the file, as from a file of its own, and each job costs one file less to make
    and close (a few hundred microseconds of system time under emulation).

    Call `finish` from the same thread: the job dies with the thread that spawned it
    (PR_SET_PDEATHSIG follows the parent thread, not the process).
    """
    uid, gid = identity or _identity(loader)
    encoded = encode_control(image, limits, uid=uid, gid=gid, parent=os.getpid())
    if stdin is None:
        control = _memfd("cpushare-job", encoded, input)
    else:
        control = _memfd("cpushare-jail-control", encoded)
    output_r, output_w = os.pipe()
    diagnostics_r, diagnostics_w = os.pipe()
    to_close = [control, output_w, diagnostics_w]
    try:
        # The child's dup2s must not clobber a source that is still to be copied, so
        # every source sits above the four target descriptors.
        sources = []
        for fd in (control if stdin is None else stdin, output_w, diagnostics_w, control):
            if fd < _CHILD_FDS:
                fd = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, _CHILD_FDS)
                to_close.append(fd)
            sources.append(fd)
        started = time.monotonic()
        pid = os.posix_spawn(
            loader,
            [str(loader)],
            {},
            file_actions=[
                (os.POSIX_SPAWN_DUP2, source, target) for target, source in enumerate(sources)
            ],
            setsigmask=(),
            setsigdef=_DEFAULT_SIGNALS,
        )
    except OSError as exc:
        os.close(output_r)
        os.close(diagnostics_r)
        raise JailError(f"cannot start the jail loader {loader}: {exc.strerror}") from exc
    finally:
        for fd in to_close:
            os.close(fd)
    return RunningJob(pid, output_r, diagnostics_r, started, limits)


def _enlarge(pipe: int) -> None:
    """A pipe that carries a large output made larger: fewer wake-ups. Only once an
    output turned out large (most fill less than the pipe's default 64 KiB): enlarging
    costs the kernel an allocation and a free per job. A refusal (the pipe quota, or
    more in the pipe than the size) only costs speed."""
    with contextlib.suppress(OSError):
        fcntl.fcntl(pipe, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)


def _pump_output(job: RunningJob, chunks: list[bytes]) -> Outcome | None:
    """Collect output until EOF; kill the job and say why at the wall or output limit."""
    size = 0
    ask = _FIRST_READ
    deadline = job.started + job.limits.wall_seconds
    poller = select.poll()
    poller.register(job.output_fd, select.POLLIN)
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            os.kill(job.pid, signal.SIGKILL)
            return Outcome.WALL_LIMIT
        if not poller.poll(math.ceil(left * 1000)):
            continue
        chunk = os.read(job.output_fd, ask)
        if not chunk:
            return None
        if len(chunk) == ask and ask != _OUTPUT_CHUNK:
            ask = _OUTPUT_CHUNK
            _enlarge(job.output_fd)
        chunks.append(chunk)
        size += len(chunk)
        if size > job.limits.output_bytes:
            os.kill(job.pid, signal.SIGKILL)
            return Outcome.OUTPUT_LIMIT


def finish(job: RunningJob) -> JobResult:
    """Wait for a spawned job under its limits, reap it, and classify how it ended."""
    # A list joined once: growing one buffer costs more than the job for large outputs.
    chunks: list[bytes] = []
    stopped: Outcome | None = None
    try:
        stopped = _pump_output(job, chunks)
    except BaseException:
        os.kill(job.pid, signal.SIGKILL)
        raise
    finally:
        _, status, usage = os.wait4(job.pid, 0)
        wall = time.monotonic() - job.started
        diagnostics = os.read(job.diagnostics_fd, 4096)
        os.close(job.output_fd)
        os.close(job.diagnostics_fd)
    cpu = usage.ru_utime + usage.ru_stime
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSYS:
        return _loader_failure(diagnostics, cpu, wall)
    outcome, exit_status, detail = _classify(status, stopped, cpu, job.limits)
    output = b"".join(chunks)
    if stopped is Outcome.OUTPUT_LIMIT:
        output = output[: job.limits.output_bytes]
    return JobResult(outcome, exit_status, output, cpu, wall, detail)


def _classify(
    status: int, stopped: Outcome | None, cpu: float, limits: Limits
) -> tuple[Outcome, int | None, str]:
    if stopped is Outcome.WALL_LIMIT:
        return stopped, None, f"killed at the wall-clock limit of {limits.wall_seconds:g} s"
    if stopped is Outcome.OUTPUT_LIMIT:
        return stopped, None, f"killed for writing more than {limits.output_bytes} bytes"
    if os.WIFEXITED(status):
        code = os.WEXITSTATUS(status)
        if code == 0:
            return Outcome.OK, 0, "exit status 0"
        return Outcome.EXIT, code, f"exit status {code}"
    sig = os.WTERMSIG(status)
    # SIGXCPU at the soft CPU limit; SIGKILL at the hard one, a second later.
    if sig == signal.SIGXCPU or (sig == signal.SIGKILL and cpu >= limits.cpu_seconds):
        return Outcome.CPU_LIMIT, None, f"killed at the CPU limit of {limits.cpu_seconds} s"
    if sig == signal.SIGKILL:
        return (
            Outcome.FORBIDDEN_SYSCALL,
            None,
            "killed by strict seccomp: it made a system call other than read, write, exit",
        )
    return Outcome.CRASHED, None, f"killed by {signal.Signals(sig).name}"


def _loader_failure(diagnostics: bytes, cpu: float, wall: float) -> JobResult:
    """The loader gave up before the job started: a memory shortage, or a jail fault."""
    found = _DIAGNOSTIC.search(diagnostics)
    if found is None:
        raise JailError("the jail loader failed while locking the job in (close_range/seccomp)")
    step, errno = found[1].decode(), int(found[2])
    reason = os.strerror(errno) if errno else "bad input"
    if step.startswith("map-") and errno == 12:
        detail = f"the machine could not provide the job's memory ({step}: {reason})"
        return JobResult(Outcome.MEMORY_LIMIT, None, b"", cpu, wall, detail)
    raise JailError(f"the jail loader failed at step {step}: {reason}")


def run_image(image: JobImage, stdin: int, limits: Limits, *, loader: Path) -> JobResult:
    """Run a validated job with `stdin` as its input descriptor, and classify the end."""
    return finish(spawn(image, stdin, limits, loader=loader))


def _refused(outcome: Outcome, exc: InvalidProgram) -> JobResult:
    return JobResult(outcome, None, b"", 0.0, 0.0, str(exc))


def prepare(program: bytes, limits: Limits) -> JobImage | JobResult:
    """`program` validated for jobs under `limits` (only their memory limit matters): its
    image, or the result every such job of it ends in (invalid, or over the limit)."""
    try:
        return validate_program(program, limits)
    except MemoryLimitExceeded as exc:
        return _refused(Outcome.MEMORY_LIMIT, exc)
    except InvalidProgram as exc:
        return _refused(Outcome.INVALID, exc)


def run_prepared(
    prepared: JobImage | JobResult, input: bytes, limits: Limits, jail: Jail
) -> JobResult:
    """Run a `prepare`d program (for `limits`' memory limit) in `jail` on `input` under
    `limits`; a refused one ends as `prepare` said, without starting."""
    if isinstance(prepared, JobResult):
        return prepared
    identity = (jail.uid, jail.gid)
    return finish(spawn(prepared, None, limits, loader=jail.loader, identity=identity, input=input))


def run_job(
    program: bytes, input: bytes, limits: Limits, *, loader: Path | None = None
) -> JobResult:
    """Validate `program`, run it in the jail on `input` under `limits`, classify the end.

    A job's failings (invalid, over a limit, crashed, forbidden syscall) are outcomes;
    JailError means the jail itself could not run it.
    """
    prepared = prepare(program, limits)
    if isinstance(prepared, JobResult):
        return prepared
    loader = loader or find_loader()
    return finish(spawn(prepared, None, limits, loader=loader, input=input))
