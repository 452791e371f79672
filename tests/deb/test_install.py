"""The package installed in a Debian 12 root: the init script sells jobs from a real
market on the host's loopback (the chroot shares the host's network), reports each
order's state, stops every seller, and the maintainer scripts keep or purge the orders.
The systemd unit is checked by systemd-analyze and enabled for boot; no test boots it
with systemd as PID 1.

Slow (about a minute once the root is cached), but part of `make test`: it is the only
test of the package as a Debian user meets it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from debroot import DebianRoot
from polling import until

from cpushare.console import events_in as events
from cpushare.seller.status import SellerStatus, read_statuses
from livecd.debpkg.archive import Built
from livecd.market_process import MarketProcess
from livecd.sdk.dither import dither, sample_image
from market import admin
from market.buyer import BuyerClient

pytestmark = [pytest.mark.chroot, pytest.mark.timeout(300)]
INIT = "/etc/init.d/cpushare"
WANTS = "etc/systemd/system/multi-user.target.wants/cpushare.service"
BROKEN_ORDER = 'format = 1\n[market]\nurl = "ftp://nowhere"\n'


@pytest.fixture(scope="module")
def installed(debian_root: DebianRoot, deb: Built) -> DebianRoot:
    """The package installed with dpkg. The root has no init system: a policy-rc.d that
    allows every action lets invoke-rc.d in the maintainer scripts act as on a machine."""
    policy = debian_root.path / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 0\n")
    policy.chmod(0o755)
    shutil.copy(deb.path, debian_root.path / "tmp")
    done = debian_root.run("dpkg", "-i", f"/tmp/{deb.path.name}")
    assert done.returncode == 0, done.stdout + done.stderr
    return debian_root


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MarketProcess]:
    process = MarketProcess(tmp_path_factory.mktemp("market"), lease_seconds=30).start()
    yield process
    process.stop(kill=True)


def orders_dir(root: DebianRoot) -> Path:
    return root.path / "etc/cpushare"


def clear_orders(root: DebianRoot) -> None:
    for order in orders_dir(root).glob("*.cpu"):
        order.unlink()


def sellers(root: DebianRoot) -> dict[str, SellerStatus]:
    return read_statuses(root.path / "run/cpushare/status")


def proc_status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


def owner(pid: int) -> int:
    return int(proc_status(pid)["Uid"].split()[0])


def jailed(root: DebianRoot) -> int | None:
    """A process of the root that runs under strict seccomp: a job."""
    for pid in root.processes():
        try:
            if proc_status(pid)["Seccomp"] == "1":
                return pid
        except (OSError, KeyError):
            continue
    return None


def no_process_left(root: DebianRoot) -> bool:
    return until(lambda: not root.processes(), "every process in the root to end", 15)


def test_start_refuses_without_an_order_and_without_strict_seccomp(
    installed: DebianRoot, market: MarketProcess
) -> None:
    assert installed.uid("cpushare") is not None
    # The jobs' own user; the loader setuid root for the sellers' group only.
    job_uid, job_gid = installed.uid("cpushare-job"), installed.gid("cpushare-job")
    assert job_uid is not None and job_uid != installed.uid("cpushare")
    loader = (installed.path / "usr/lib/cpushare/jail-loader").stat()
    assert (loader.st_mode & 0o7777, loader.st_uid) == (0o4750, 0)
    assert loader.st_gid == installed.gid("cpushare")
    identity = (installed.path / "usr/lib/cpushare/job-identity").stat()
    assert (identity.st_uid, identity.st_gid) == (job_uid, job_gid)
    assert (installed.path / "etc/rc2.d/S01cpushare").is_symlink()
    assert (installed.path / WANTS).is_symlink()
    verified = installed.run("systemd-analyze", "verify", "cpushare.service")
    assert verified.returncode == 0 and verified.stderr == "", verified.stderr
    clear_orders(installed)
    empty = installed.run(INIT, "start")
    assert empty.returncode == 2
    [error] = events(empty.stdout, "error")
    assert error["what"] == "sellers" and "no order in /etc/cpushare" in error["detail"]

    market.account("refused")
    market.order("refused", orders_dir(installed) / "refused-cpu0.cpu")
    failing = installed.run(INIT, "start", env={"CPUSHARE_SELFTEST": "fail"})
    assert failing.returncode == 1
    assert events(failing.stdout, "seccomp")[0]["status"] == "failed"
    assert "strict seccomp does not work" in events(failing.stdout, "error")[0]["detail"]
    assert installed.processes() == []
    assert installed.run(INIT, "status").returncode == 3
    clear_orders(installed)


def test_two_orders_sell_at_nice_19_as_the_sellers_user_and_stop_leaves_none(
    installed: DebianRoot, market: MarketProcess, fsdither: bytes, spin: bytes
) -> None:
    clear_orders(installed)
    market.account("volunteer")
    first = orders_dir(installed) / "volunteer-cpu0.cpu"
    market.order("volunteer", first)
    shutil.copyfile(first, orders_dir(installed) / "volunteer-cpu1.cpu")
    (orders_dir(installed) / "broken.cpu").write_text(BROKEN_ORDER)
    buyer = BuyerClient(market.url, market.account("lab", coins=100_000).api_key)

    started = installed.run(INIT, "start")
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        [skipped] = [e for e in events(started.stdout, "error") if e["what"] == "order"]
        assert skipped["file"] == "broken.cpu" and "skipped" in skipped["detail"]
        assert events(started.stdout, "orders")[0]["count"] == "2"
        up = until(lambda: len(sellers(installed)) == 2 and sellers(installed), "two sellers")
        assert sorted(up) == ["volunteer-cpu0", "volunteer-cpu1"]
        log = installed.path / "var/log/cpushare.log"
        until(lambda: len(events(log.read_text(), "seller-started")) == 2, "the log's lines")

        images = [sample_image(120 + 8 * i, 90 + 4 * i, seed=i) for i in range(10)]
        # Both sellers are one host (one machine, one address): agreement needs another
        # machine, and this test is about the package, so the buyer trusts every seller.
        jobs = buyer.submit(buyer.upload_program(fsdither), images, replicas=1)
        until(lambda: buyer.status()["jobs"]["done"] >= len(jobs), "every job done", 90)
        assert [buyer.output(job) for job in jobs] == [dither(image) for image in images]

        # A seller writes the counts of results acknowledged while tiny jobs run about a
        # second later, with its job loop's next write.
        statuses = until(
            lambda: (
                (found := sellers(installed))
                and sum(s.jobs_done for s in found.values()) == len(jobs)
                and found
            ),
            "the status files' counts",
        )
        assert all(s.jobs_done >= 1 and s.nice == 19 for s in statuses.values()), statuses
        uid = installed.uid("cpushare")
        for s in statuses.values():
            assert os.getpriority(os.PRIO_PROCESS, s.pid) == 19
            assert owner(s.pid) == uid
        cpu_ms = sum(max(1, round(1000 * float(j["cpu_seconds"]))) for j in buyer.jobs("done"))
        coins = {row["name"]: row["coins"] for row in admin.list_accounts(market.db)}
        assert round(1000 * coins["volunteer"]) == cpu_ms

        status = installed.run(INIT, "status")
        assert status.returncode == 0, status.stdout
        rows = {line.split()[0]: line.split()[1] for line in status.stdout.splitlines()[1:]}
        assert rows.keys() == {"volunteer-cpu0", "volunteer-cpu1"}
        assert set(rows.values()) <= {"leasing", "running", "posting"}, status.stdout

        # A job runs as cpushare-job, its parent (the loader's stand-in) as the seller;
        # stopping kills it through the stand-in (no process is left, below).
        buyer.submit(buyer.upload_program(spin), [b"100000"], replicas=1)
        job = until(lambda: jailed(installed), "a spinning job")
        job_ids = proc_status(job)
        stand_in = int(job_ids["PPid"])
        assert job_ids["Uid"].split() == [str(installed.uid("cpushare-job"))] * 4
        assert job_ids["Gid"].split() == [str(installed.gid("cpushare-job"))] * 4
        assert job_ids["Groups"].strip() == ""
        assert owner(stand_in) == uid
        assert int(proc_status(stand_in)["PPid"]) in {s.pid for s in statuses.values()}
    finally:
        stopped = installed.run(INIT, "stop")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert no_process_left(installed)
    assert {s.state for s in sellers(installed).values()} == {"stopped"}
    assert installed.run(INIT, "status").returncode == 3


def test_upgrade_restarts_removal_stops_the_sellers_and_keeps_the_orders_purge_removes_them(
    installed: DebianRoot, market: MarketProcess, deb: Built
) -> None:
    clear_orders(installed)
    market.account("kept")
    order = orders_dir(installed) / "kept-cpu0.cpu"
    market.order("kept", order)
    assert installed.run(INIT, "start").returncode == 0
    before = until(lambda: sellers(installed).get("kept-cpu0"), "the seller").pid
    pidfile = installed.path / "run/cpushare/sellers.pid"
    supervisor = pidfile.read_text()

    # Installing it again is an upgrade: the sellers go on, restarted with the new code.
    again = installed.run("dpkg", "-i", f"/tmp/{deb.path.name}")
    assert again.returncode == 0, again.stdout + again.stderr
    assert pidfile.read_text() != supervisor

    def restarted() -> SellerStatus | None:
        seller = sellers(installed).get("kept-cpu0")
        return seller if seller is not None and seller.pid != before else None

    until(restarted, "a new seller")
    assert installed.run(INIT, "status").returncode == 0

    removed = installed.run("dpkg", "--remove", "cpushare")
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert no_process_left(installed)
    assert order.is_file()
    assert not (installed.path / "usr/lib/cpushare").exists()
    assert installed.uid("cpushare") is not None

    purged = installed.run("dpkg", "--purge", "cpushare")
    assert purged.returncode == 0, purged.stdout + purged.stderr
    assert not orders_dir(installed).exists()
    assert installed.uid("cpushare") is None
    assert installed.uid("cpushare-job") is None
    overrides = installed.run("dpkg-statoverride", "--list")
    assert "/usr/lib/cpushare" not in overrides.stdout
    assert not (installed.path / "etc/rc2.d/S01cpushare").exists()
    assert not (installed.path / WANTS).is_symlink()
