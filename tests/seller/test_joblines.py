"""A seller's job lines: every job's, or one job's in a period with the others counted;
the fleet's choice from the kernel options."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from seller_processes import StartSeller

from cpushare.console import events_in
from cpushare.seller.fleet import JOB_LINES_SECONDS, job_lines
from cpushare.seller.joblines import JobLines
from livecd.market_process import MarketProcess
from livecd.qemu.sale_market import job_inputs
from market.buyer import BuyerClient


def _run(lines: JobLines, jobs: list[tuple[int, str, bool]]) -> None:
    for job, status, last in jobs:
        lines.leased(job)
        lines.finished(job, status, 0.0125, last=last)


def test_without_a_period_every_job_has_both_lines_and_its_count() -> None:
    out = io.StringIO()
    _run(JobLines(out, "o-1", 0.0), [(7, "ok", False), (8, "ok", False), (9, "exit", True)])
    text = out.getvalue()
    assert [e["job"] for e in events_in(text, "job-leased", order="o-1")] == ["7", "8", "9"]
    finished = events_in(text, "job-finished", order="o-1")
    assert [(e["job"], e["status"], e["done"]) for e in finished] == [
        ("7", "ok", "1"),
        ("8", "ok", "2"),
        ("9", "exit", "3"),
    ]
    assert finished[0]["cpu_seconds"] == "0.01"  # rounded to 3 digits, printed with 2


def test_within_a_period_only_the_first_job_the_failures_and_the_last_are_said() -> None:
    out = io.StringIO()
    jobs = [(1, "ok", False), (2, "ok", False), (3, "crashed", False), (4, "ok", False)]
    _run(JobLines(out, "o-1", 3600.0), [*jobs, (5, "ok", True)])
    text = out.getvalue()
    assert [e["job"] for e in events_in(text, "job-leased")] == ["1"]
    finished = events_in(text, "job-finished")
    assert [(e["job"], e["status"], e["done"]) for e in finished] == [
        ("1", "ok", "1"),
        ("3", "crashed", "3"),
        ("5", "ok", "5"),
    ]


def test_the_fleet_shows_some_job_lines_unless_asked_for_all() -> None:
    assert job_lines({}) == JOB_LINES_SECONDS > 0
    assert job_lines({"jobs": "some"}) == JOB_LINES_SECONDS
    assert job_lines({"jobs": "all"}) == 0.0


def test_a_bad_jobs_option_is_one_line_and_ignored(capsys: pytest.CaptureFixture[str]) -> None:
    assert job_lines({"jobs": "every"}) == JOB_LINES_SECONDS
    (error,) = events_in(capsys.readouterr().out, "error", what="option")
    assert "cpushare.jobs=every" in error["detail"]


def test_a_seller_with_a_period_counts_the_jobs_it_does_not_show(
    tmp_path: Path,
    market: MarketProcess,
    buyer: BuyerClient,
    fsdither: bytes,
    start_seller: StartSeller,
) -> None:
    market.order("lab", tmp_path / "lab.cpu")
    count = 20
    buyer.submit(buyer.upload_program(fsdither), job_inputs(count), replicas=1)
    seller = start_seller(tmp_path / "lab.cpu", "--job-lines", "3600")
    finished = seller.wait_for("job-finished", 1)
    while finished[-1]["done"] != str(count):
        finished = seller.wait_for("job-finished", len(finished) + 1)
    leased = seller.events("job-leased")
    assert leased[0]["job"] == finished[0]["job"]  # the first job is shown whole
    assert len(leased) < count and len(finished) < count
    assert [int(e["done"]) for e in finished] == sorted({int(e["done"]) for e in finished})
