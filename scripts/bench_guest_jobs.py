#!/usr/bin/env python3
"""Small jobs per minute in one guest boot: through the market, then the same jobs one
after another in the guest's own jail, and their ratio. Prints, asserts nothing.

    scripts/bench_guest_jobs.py [--iso ISO] [--jobs N] [--timeline] [--icount]

The guest (BIOS, 1 vCPU, virtio-net, TCG) boots the ISO's kernel directly with its root
shell on ttyS1 and sells to a market on the host's loopback (reached by guestfwd), which
trusts it alone (one replica): the figure counts from its first lease to its last accepted
result, the protocol's round trips included. Then, in the same boot, its sellers stopped,
the same program and inputs go through the shell and run in the jail one after another,
as the sellers run them (the sellers' user, their nice level, the market's limits; the
program validated once and the jail looked up once, `prepare` and `run_prepared`), with
nothing else: the protocol's cost is what the ratio misses of 1 (goal: at least 0.8).

The ratio follows the host's load: the market runs there, and under TCG the guest's clock
is the host's. Measure old and new ISOs alternately, several runs each, with more jobs
(--jobs 400) for steadier figures. Also printed: the guest's CPU per job outside the jobs
(the sellers' own, their start-up included, against the jail run's own Python) and of the
jobs themselves (the loader, its stand-in and the job), which the host's load sways less
(guest CPU time still stretches when the host takes the vCPU's thread away), and where
the sellers' queue ran dry (each time, the job loop waited on a round trip to the market),
each seller thread's CPU, switches and system calls, the jail run's, and how many results
a post carried and leases a grant (from the market's database).

With --icount, QEMU counts the guest's time in instructions (single-threaded TCG): the
guest's CPU per job no longer depends on the host's load, so two builds' sellers compare
by it, one run each. The ratio then means nothing (the market on the host runs at the
host's speed, the guest at its instruction count's).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import os
import re
import sqlite3
import statistics
import sys
import tempfile
import zlib
from pathlib import Path

from livecd.build import given_or_built
from livecd.qemu.events import Event
from livecd.qemu.guest import Guest
from livecd.qemu.machine import GuestConfig, counting_instructions
from livecd.qemu.report import format_report
from livecd.qemu.sale import run_sale
from livecd.qemu.sale_market import JOB_LIMITS, build_fsdither, job_inputs
from livecd.sdk.dither import dither

RATIO_GOAL = 0.8
# A shell line stays below the guest shell's line editor's limit (1024 characters).
CHUNK = 768
# The batch cycles through this many distinct pictures: they go to the guest through its
# shell, line by line, for the second half.
DISTINCT_INPUTS = 8
GUEST_DIR = "/run/bench-jobs"
# Run in the guest: the jobs one after another in the jail, as a seller runs them (its
# user, its nice level, the program prepared once), timed; one JSON line with the seconds
# and each output's sha256.
GUEST_SCRIPT = """
import base64, hashlib, json, os, pwd, resource, sys, time, zlib
from cpushare.jail import Jail, Limits, prepare, run_prepared
from cpushare.limits import JobLimits
from cpushare.seller.privileges import drop_to
doc = json.loads(zlib.decompress(base64.b64decode(open(sys.argv[1], "rb").read())))
program = base64.b64decode(doc["program"])
pictures = [base64.b64decode(i) for i in doc["pictures"]]
inputs = [pictures[i] for i in doc["order"]]
limits = Limits.for_job(JobLimits(**doc["limits"]), nice=doc["nice"])
user = pwd.getpwnam("cpushare")
os.setpriority(os.PRIO_PROCESS, 0, doc["nice"])
drop_to((user.pw_uid, user.pw_gid))
def cpu(who):
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime
own, jobs = cpu(resource.RUSAGE_SELF), cpu(resource.RUSAGE_CHILDREN)
before = resource.getrusage(resource.RUSAGE_SELF)
start = time.perf_counter()
prepared, jail = prepare(program, limits), Jail.find()
results = [run_prepared(prepared, data, limits, jail) for data in inputs]
seconds = time.perf_counter() - start
after = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"seconds": seconds, "outcomes": [r.outcome.value for r in results],
                  "sha256": [hashlib.sha256(r.output).hexdigest() for r in results],
                  "own_cpu": cpu(resource.RUSAGE_SELF) - own,
                  "jobs_cpu": cpu(resource.RUSAGE_CHILDREN) - jobs,
                  "own_split": [after.ru_utime - before.ru_utime,
                                after.ru_stime - before.ru_stime,
                                after.ru_minflt - before.ru_minflt,
                                after.ru_nvcsw - before.ru_nvcsw,
                                after.ru_nivcsw - before.ru_nivcsw]}))
"""


def send_file(guest: Guest, data: bytes, path: str) -> None:
    """`data` into the guest's `path`, in base64 through the shell, a line at a time."""
    text = base64.b64encode(data).decode()
    guest.shell(f"mkdir -p {GUEST_DIR} && : > {path}")
    for i in range(0, len(text), CHUNK):
        status, out = guest.shell(f"printf %s {text[i : i + CHUNK]} >> {path}")
        if status != 0:
            raise RuntimeError(f"writing {path} in the guest failed: {out.strip()}")


def jail_in_guest(
    guest: Guest, program: bytes, inputs: list[bytes], nice: int
) -> dict[str, object]:
    """The jobs run one after another in the guest's jail: seconds, outcomes, sha256s."""
    distinct = list(dict.fromkeys(inputs))
    doc = {
        "program": base64.b64encode(program).decode(),
        "pictures": [base64.b64encode(i).decode() for i in distinct],
        "order": [distinct.index(i) for i in inputs],
        "limits": JOB_LIMITS.as_dict(),
        "nice": nice,
    }
    send_file(guest, zlib.compress(json.dumps(doc).encode(), 9), f"{GUEST_DIR}/jobs.b64")
    send_file(guest, GUEST_SCRIPT.encode(), f"{GUEST_DIR}/script.b64")
    guest.shell(f"base64 -d {GUEST_DIR}/script.b64 > {GUEST_DIR}/jobs.py")
    # The sellers stop first (they hand nothing back: the market has no job left).
    guest.shell("/etc/init.d/cpushare stop", 60)
    status, out = guest.shell(
        f"cd / && python3.11 -I -S {GUEST_DIR}/jobs.py {GUEST_DIR}/jobs.b64", 900
    )
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if status != 0 or not lines:
        raise RuntimeError(f"the jobs did not run in the guest's jail: {out.strip()[-500:]}")
    found: dict[str, object] = json.loads(lines[-1])
    return found


def guest_cpu(guest: Guest) -> dict[str, float]:
    """CPU seconds since boot in the guest, read before its sellers stop: every seller's
    own (its job loop and its courier), their jobs', the fleet's, and the whole system's
    busy and idle time (boot included)."""
    tick = 100.0  # USER_HZ
    _, out = guest.shell(
        "head -1 /proc/stat; for f in /run/cpushare/*.pid; do "
        '[ -f "$f" ] && echo "$f $(cat /proc/$(cat $f)/stat)"; done',
        30,
    )
    found: dict[str, float] = {}
    for line in out.splitlines():
        words = line.split()
        if words[:1] == ["cpu"]:
            user, nice, system, idle = (int(w) for w in words[1:5])
            found["busy"] = (user + nice + system) / tick
            found["idle"] = idle / tick
        elif len(words) > 17 and words[0].endswith(".pid"):
            # /proc/PID/stat after the name: utime, stime, cutime, cstime are fields 14-17.
            fields = line[line.rindex(")") + 2 :].split()
            own = (int(fields[11]) + int(fields[12])) / tick
            children = (int(fields[13]) + int(fields[14])) / tick
            who = "fleet" if words[0].endswith("fleet.pid") else "sellers"
            found[who] = found.get(who, 0.0) + own
            if who == "sellers":
                found["jobs"] = found.get("jobs", 0.0) + children
    return found


def seller_threads(guest: Guest) -> list[str]:
    """Each seller thread's CPU since boot in the guest, user and system, its context
    switches (voluntary and not), page faults and read and write system calls: where a
    seller's own CPU goes (by thread id, in the order started: the job loop first, the
    courier the last busy one)."""
    _, out = guest.shell(
        "for f in /run/cpushare/*.pid; do case $f in *fleet.pid) continue;; esac; "
        'for t in /proc/$(cat "$f")/task/*; do echo "$t $(cat $t/stat) '
        "$(grep -h ctxt_switches $t/status | tr -s ' \\t' ' ' | tr '\\n' ' ') "
        "$(grep -h sysc $t/io | tr '\\n' ' ')\"; done; done",
        30,
    )
    found = []
    for line in out.splitlines():
        if not line.startswith("/proc/") or ")" not in line:
            continue
        fields = line[line.rindex(")") + 2 :].split()
        user, system = int(fields[11]) / 100, int(fields[12]) / 100
        faults = int(fields[7])
        switches = re.findall(r"ctxt_switches:\s*(\d+)", line)
        calls = dict(re.findall(r"(sysc[rw]):\s*(\d+)", line))
        found.append(
            f"{line.split()[0]}: user {user:.2f} s, system {system:.2f} s, "
            f"switches {'/'.join(switches)} (voluntary/not), {faults} page faults, "
            f"{calls.get('syscr', '?')} reads and {calls.get('syscw', '?')} writes"
        )
    return found


def market_batches(db: Path) -> str:
    """How the results came and the leases went, from the market's database: the requests
    that stored results (one time of storing each) and those that granted leases, with
    how many each carried on average."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        posts, results = conn.execute(
            "SELECT count(DISTINCT created), count(*) FROM results"
        ).fetchone()
        grants, leases = conn.execute(
            "SELECT count(DISTINCT created), count(*) FROM leases"
        ).fetchone()
    return (
        f"{posts} posts of {results / max(posts, 1):.1f} results, "
        f"{grants} grants of {leases / max(grants, 1):.1f} leases"
    )


def job_times(events: list[Event]) -> tuple[list[float], list[float]]:
    """Guest seconds of each job from its lease to its end (`job-leased` to `job-finished`
    of the same job) and from one job's end to the next one's lease, by the console's
    uptimes: of the jobs whose two lines the guest showed (the fleet shows one job's a
    second at most, unless booted with `cpushare.jobs=all`)."""
    running, between = [], []
    leased: dict[str, float] = {}
    finished: dict[str, float] = {}
    for e in events:
        job = e.fields.get("job")
        if e.uptime is None or job is None:
            continue
        if e.event == "job-leased":
            leased[job] = e.uptime
        elif e.event == "job-finished" and job in leased:
            running.append(e.uptime - leased[job])
            finished[job] = e.uptime
    for job, at in finished.items():
        after = str(int(job) + 1)
        if after in leased:
            between.append(leased[after] - at)
    return running, between


def dry_queues(events: list[Event]) -> list[tuple[str, float]]:
    """Where a seller's queue ran dry before the batch's end (its job loop then waited
    for a round trip): the jobs that ended with nothing queued behind them, shown on the
    console although their start was not (`job-finished` of a job with no `job-leased`
    line, ok), but the last one, with their guest seconds since the first lease."""
    leased: set[str] = set()
    found: list[tuple[str, float]] = []
    first: float | None = None
    for e in events:
        job = e.fields.get("job")
        if e.uptime is None or job is None:
            continue
        if e.event == "job-leased":
            leased.add(job)
            first = e.uptime if first is None else first
        elif e.event == "job-finished" and job not in leased and e.fields.get("status") == "ok":
            found.append((job, e.uptime - (first or e.uptime)))
    return found[:-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iso", type=Path, help="ISO to boot [default: build the default one]")
    parser.add_argument("--jobs", type=int, default=40, help="jobs in the batch [40]")
    parser.add_argument(
        "--timeline", action="store_true", help="print when each job was leased and ended"
    )
    parser.add_argument(
        "--icount",
        action="store_true",
        help="count guest time in instructions: to compare two builds' CPU per job, "
        "not for the goal",
    )
    args = parser.parse_args()
    extra = counting_instructions() if args.icount else ()
    direct: dict[str, object] = {}
    cpu: dict[str, float] = {}
    threads: list[str] = []
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-guest-jobs-") as tmp:
        work = Path(tmp)
        iso = given_or_built(args.iso, work)
        program = build_fsdither(work)
        pictures = job_inputs(min(args.jobs, DISTINCT_INPUTS))
        inputs = [pictures[i % len(pictures)] for i in range(args.jobs)]

        def in_the_jail(guest: Guest) -> list[str]:
            try:
                cpu.update(guest_cpu(guest))
                threads.extend(seller_threads(guest))
                direct.update(jail_in_guest(guest, program, inputs, nice=19))
            except (RuntimeError, TimeoutError) as exc:
                return [str(exc)]
            return []

        cfg = GuestConfig(iso=iso, cpus=1, nic="virtio-net-pci", shell=True, extra=extra)
        result = run_sale(
            cfg,
            work / "serial.log",
            work,
            jobs=args.jobs,
            timeout=900,
            while_up=in_the_jail,
            replicas=1,
        )
        format_report(result, print)
        database = work / "market" / "market.db"
        batches = market_batches(database) if database.exists() else "no market database"
        problems += result.problems
    for problem in problems:
        print(f"bench_guest_jobs: problem: {problem}")
    running, between = job_times(result.milestones)
    if args.timeline:
        jobs = [e for e in result.milestones if e.event in ("job-leased", "job-finished")]
        print("timeline (l: leased, f: finished, guest uptime):")
        print(" ".join(f"{e.event[4]}{e.uptime}" for e in jobs))
    if running:
        print(f"per job, lease to end (mean)      {statistics.mean(running) * 1000:9.1f} ms")
    if between:
        print(f"per job, end to next lease (mean) {statistics.mean(between) * 1000:9.1f} ms")
    dry = dry_queues(result.milestones)
    print(
        f"queue ran dry                     {len(dry):6d} times   "
        + " ".join(f"job {job} at {at:.2f} s" for job, at in dry)
    )
    if cpu:
        print(
            "guest CPU since boot (s)          "
            + " ".join(f"{name}={seconds:.2f}" for name, seconds in cpu.items())
        )
    print(f"market requests                   {batches}")
    for thread in threads:
        print(f"seller thread {thread}")
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"host load averages                {load}")
    market = result.sale.jobs_per_minute if result.sale else None
    print(f"jobs per minute, market           {market or 0:9.1f}   ({args.jobs} jobs)")
    seconds = direct.get("seconds")
    if not isinstance(seconds, float) or seconds <= 0:
        return 1
    outputs = direct.get("sha256")
    expected = [hashlib.sha256(dither(pgm)).hexdigest() for pgm in inputs]
    if outputs != expected:
        print("bench_guest_jobs: problem: the guest's jail outputs differ from the reference")
    jail = 60 * len(inputs) / seconds
    print(f"jobs per minute, guest's jail     {jail:9.1f}   ({seconds:.2f} s)")
    own, jobs_cpu = direct.get("own_cpu"), direct.get("jobs_cpu")
    split = direct.get("own_split")
    if isinstance(split, list) and len(split) == 5:
        print(
            f"the jail run's own: user {split[0]:.2f} s, system {split[1]:.2f} s, "
            f"switches {split[3]}/{split[4]} (voluntary/not), {split[2]} page faults"
        )
    if cpu and isinstance(own, float) and isinstance(jobs_cpu, float):
        per_job = 1000 / len(inputs)
        print(
            "guest CPU per job outside the jobs "
            f"market {cpu.get('sellers', 0.0) * per_job:.2f} ms (sellers, start-up included), "
            f"jail {own * per_job:.2f} ms"
        )
        print(
            "guest CPU per job of the jobs      "
            f"market {cpu.get('jobs', 0.0) * per_job:.2f} ms, jail {jobs_cpu * per_job:.2f} ms"
        )
    if market:
        print(f"market / jail                     {market / jail:9.2f}   (goal >= {RATIO_GOAL})")
    return 0 if market and not problems else 1


if __name__ == "__main__":
    sys.exit(main())
