"""The installed loader: setuid root, mode 4750 root:<sellers' group>, jobs run as the owner
of the job-identity file, whatever the caller asks for.

Real setuid, real users: a throwaway seller and jobs user are made with useradd and
removed; the loader is copied into a directory of a filesystem that honours setuid; the
seller's side runs as that seller (setuid_caller.py)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cpushare.jail.runner import JOB_IDENTITY

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
CALLER = HERE / "setuid_caller.py"
NOBODY = 65534
# The identity file's path is fixed in the loader: runs of this module take turns.
LOCK = Path(tempfile.gettempdir()) / "cpushare-job-identity.lock"


@dataclass(frozen=True)
class SetuidJail:
    loader: Path
    jobs: dict[str, Path]
    python: str
    seller: pwd.struct_passwd
    job_user: pwd.struct_passwd

    def call(
        self, *args: str, user: int | None = None, env: dict[str, str] | None = None
    ) -> subprocess.Popen[str]:
        """setuid_caller.py with `args`, as the seller (or `user`), its pipes open."""
        uid = self.seller.pw_uid if user is None else user
        gid = self.seller.pw_gid if user is None else pwd.getpwuid(user).pw_gid
        return subprocess.Popen(
            [self.python, str(CALLER), *args],
            user=uid,
            group=gid,
            extra_groups=[],
            env={"PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1", **(env or {})},
            cwd=self.loader.parent,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run(self, *args: str, user: int | None = None, **env: str) -> dict[str, object]:
        proc = self.call("run", str(self.loader), *args, user=user, env=env)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        result: dict[str, object] = json.loads(out)
        return result


def _user(name: str) -> pwd.struct_passwd:
    subprocess.run(
        ["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/bin/false", name],
        check=True,
    )
    return pwd.getpwnam(name)


def _runs_as(python: str, user: pwd.struct_passwd) -> bool:
    probe = [python, "-c", "import enum; enum.StrEnum"]
    try:
        done = subprocess.run(probe, user=user.pw_uid, group=user.pw_gid, cwd="/")
    except PermissionError:  # an interpreter under a home directory of root's
        return False
    return done.returncode == 0


@contextlib.contextmanager
def _identity_file(owner: pwd.struct_passwd) -> Iterator[None]:
    """JOB_IDENTITY owned by `owner`, for this module only (another run waits)."""
    with LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        made_dir = not JOB_IDENTITY.parent.exists()
        if not made_dir and JOB_IDENTITY.exists():
            pytest.skip(f"{JOB_IDENTITY} exists on this host (an installed package?)")
        JOB_IDENTITY.parent.mkdir(parents=True, exist_ok=True)
        try:
            JOB_IDENTITY.write_text("cpushare-job\n")
            os.chown(JOB_IDENTITY, owner.pw_uid, owner.pw_gid)
            yield
        finally:
            JOB_IDENTITY.unlink(missing_ok=True)
            if made_dir:
                JOB_IDENTITY.parent.rmdir()


@pytest.fixture(scope="module")
def jail(
    loader: Path, job_paths: dict[str, Path], attack_paths: dict[str, Path]
) -> Iterator[SetuidJail]:
    if os.geteuid() != 0:
        pytest.skip("needs root: it makes users and a setuid binary")
    tag = f"{os.getpid() % 100000}"
    work = Path(tempfile.mkdtemp(prefix="cpushare-setuid-"))
    options = subprocess.run(
        ["findmnt", "-n", "-o", "OPTIONS", "-T", str(work)], capture_output=True, text=True
    ).stdout
    users: list[str] = []
    try:
        if "nosuid" in options.split(","):
            pytest.skip(f"{work} is on a nosuid filesystem")
        seller = _user(f"cpst-seller{tag}")
        users.append(seller.pw_name)
        job_user = _user(f"cpst-job{tag}")
        users.append(job_user.pw_name)
        work.chmod(0o755)
        installed = work / "jail-loader"
        shutil.copyfile(loader, installed)
        os.chown(installed, 0, seller.pw_gid)
        installed.chmod(0o4750)  # chown first: it would clear the setuid bit
        jobs = {}
        sources = {**job_paths, "endless_loop": attack_paths["endless_loop"]}
        for name in ("echo", "exit_status", "selftest", "endless_loop"):
            jobs[name] = work / f"{name}.job"
            shutil.copyfile(sources[name], jobs[name])
            jobs[name].chmod(0o644)
        fallback = shutil.which("python3", path=os.defpath) or sys.executable
        python = next(p for p in (sys.executable, fallback) if _runs_as(p, seller))
        with _identity_file(job_user):
            yield SetuidJail(installed, jobs, python, seller, job_user)
    finally:
        shutil.rmtree(work)
        for name in users:
            _kill_processes_of(pwd.getpwnam(name).pw_uid)
        for name in reversed(users):
            subprocess.run(["userdel", name], check=True)
            subprocess.run(["groupdel", name], check=False, capture_output=True)


def _kill_processes_of(uid: int) -> None:
    """SIGKILL what a failed test left running as `uid` (all started by this module)."""
    for status in Path("/proc").glob("[0-9]*/status"):
        with contextlib.suppress(OSError):
            if status.stat().st_uid == uid:
                os.kill(int(status.parent.name), signal.SIGKILL)


def status_of(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


def locked_child(parent: int) -> int:
    """The pid of `parent`'s child once it runs under strict seccomp."""
    children = Path(f"/proc/{parent}/task/{parent}/children")
    for _ in range(2000):
        for pid in children.read_text().split():
            with contextlib.suppress(FileNotFoundError):
                if status_of(int(pid)).get("Seccomp") == "1":
                    return int(pid)
        time.sleep(0.005)
    raise AssertionError(f"no child of {parent} entered strict seccomp")


def test_a_job_runs_as_the_jobs_identity_and_dies_with_its_stand_in(jail: SetuidJail) -> None:
    proc = jail.call("spin", str(jail.loader), str(jail.jobs["endless_loop"]))
    try:
        assert proc.stdout is not None and proc.stdin is not None
        stand_in = int(proc.stdout.readline())
        job = locked_child(stand_in)
        job_status, stand_in_status = status_of(job), status_of(stand_in)
        proc.stdin.close()  # the seller kills the pid it spawned: the stand-in
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
        proc.wait()
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    uid, gid = jail.job_user.pw_uid, jail.job_user.pw_gid
    assert job_status["Uid"].split() == [str(uid)] * 4
    assert job_status["Gid"].split() == [str(gid)] * 4
    assert job_status["Groups"].strip() == ""
    assert job_status["NoNewPrivs"] == "1"
    # The stand-in: real uid the seller's (it may kill it), the others the job's (the
    # parent-death signal goes out with them); no root left anywhere.
    assert stand_in_status["Uid"].split() == [str(jail.seller.pw_uid)] + [str(uid)] * 3
    assert stand_in_status["Gid"].split() == [str(jail.seller.pw_gid)] * 4
    for _ in range(2000):
        if not Path(f"/proc/{job}").exists():
            break
        time.sleep(0.005)
    else:
        raise AssertionError(f"job {job} outlived its stand-in")


def test_output_and_exit_status_come_through_the_stand_in(jail: SetuidJail) -> None:
    echoed = jail.run(str(jail.jobs["echo"]), "hello", "5", "30")
    assert (echoed["outcome"], echoed["output"]) == ("ok", "hello")
    exited = jail.run(str(jail.jobs["exit_status"]), "exit 9", "5", "30")
    assert (exited["outcome"], exited["exit_status"]) == ("exit", 9)


def test_the_wall_clock_kills_a_job_the_seller_cannot_signal(jail: SetuidJail) -> None:
    result = jail.run(str(jail.jobs["endless_loop"]), "", "30", "0.5")
    assert result["outcome"] == "wall-limit"


@pytest.mark.parametrize("who", ["root", "the caller"])
def test_an_identity_other_than_the_files_is_refused(jail: SetuidJail, who: str) -> None:
    uid, gid = (0, 0) if who == "root" else (jail.seller.pw_uid, jail.seller.pw_gid)
    result = jail.run(str(jail.jobs["echo"]), "hello", "5", "30", "19", str(uid), str(gid))
    assert result == {"error": "the jail loader failed at step identity-mismatch: bad input"}


@pytest.mark.parametrize("who", ["root", "the caller"])
def test_a_job_identity_file_of_root_or_the_caller_is_refused(jail: SetuidJail, who: str) -> None:
    owner = (0, 0) if who == "root" else (jail.seller.pw_uid, jail.seller.pw_gid)
    os.chown(JOB_IDENTITY, *owner)
    try:
        # The control stream asks for exactly that owner: the loader still says no.
        result = jail.run(str(jail.jobs["echo"]), "hi", "5", "30", "19", *map(str, owner))
    finally:
        os.chown(JOB_IDENTITY, jail.job_user.pw_uid, jail.job_user.pw_gid)
    assert result == {"error": "the jail loader failed at step job-identity-refused: bad input"}


def test_a_caller_outside_the_group_cannot_execute_the_loader(jail: SetuidJail) -> None:
    result = jail.run(str(jail.jobs["echo"]), "hello", "5", "30", user=NOBODY)
    assert result == {"error": f"cannot start the jail loader {jail.loader}: Permission denied"}


def test_a_cpu_limit_above_the_callers_own_is_refused(jail: SetuidJail) -> None:
    # Root could raise the hard limit; the loader has stopped being root by then.
    refused = jail.run(str(jail.jobs["echo"]), "hi", "20", "30", CPU_HARD="10")
    assert refused == {
        "error": "the jail loader failed at step rlimit-cpu: Operation not permitted"
    }
    within = jail.run(str(jail.jobs["echo"]), "hi", "5", "30", CPU_HARD="10")
    assert within["outcome"] == "ok"


def test_a_nice_below_the_callers_own_is_refused(jail: SetuidJail) -> None:
    same = jail.run(str(jail.jobs["echo"]), "hi", "5", "30", "10", NICE_FIRST="10")
    assert same.get("outcome") == "ok", same
    below = jail.run(str(jail.jobs["echo"]), "hi", "5", "30", "5", NICE_FIRST="10")
    assert below == {"error": "the jail loader failed at step setpriority: Permission denied"}


def test_the_self_test_passes_through_the_setuid_loader(jail: SetuidJail) -> None:
    proc = jail.call("selftest", str(jail.loader), str(jail.jobs["selftest"]))
    out, err = proc.communicate(timeout=120)
    assert out.startswith("strict seccomp verified: "), out + err
    assert "forbidden syscall killed" in out and "benign job ok" in out
