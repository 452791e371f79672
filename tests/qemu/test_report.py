"""Console lines as events, the one classifier of what the guest reported as wrong, and
the report as a table and as JSON."""

from __future__ import annotations

from cpushare.console import format_line
from livecd.qemu.events import Event, events_in
from livecd.qemu.report import Report, SaleFigures, console_problems, format_report, report_json


def line(event: str, host_seconds: float = 0.0, **fields: str) -> Event:
    return Event(event, {"event": event, **fields}, host_seconds)


MEDIUM = line("orders", source="medium", count="1")
NETWORK = line("network", addr="10.0.2.15/24")


def test_events_come_from_cpushare_lines_only_with_their_fields_and_uptime() -> None:
    lines = [
        "[    1.2] random kernel noise",
        "login: " + format_line("error", what="order", detail='a "quoted" reason', uptime=3.5),
        format_line("network", addr="10.0.2.15/24"),
    ]
    error, network = events_in(lines)
    assert (error.event, error.fields["detail"], error.uptime) == (
        "error",
        'a "quoted" reason',
        3.5,
    )
    assert network.fields["addr"] == "10.0.2.15/24" and network.uptime is None
    assert error.matches("error", {"what": "order"}) and not error.matches("error", {"what": "x"})


def test_the_market_out_of_reach_counts_only_once_the_guest_has_an_address() -> None:
    unreachable = line("error", what="market-unreachable", detail="Network is unreachable")
    assert console_problems([MEDIUM, unreachable, NETWORK]) == []
    late = console_problems([MEDIUM, NETWORK, unreachable])
    assert late == ["the guest reported an error: market-unreachable: Network is unreachable"]
    # Where no market runs, the market is never reachable.
    assert console_problems([MEDIUM, NETWORK, unreachable], market_reachable=False) == []


def test_what_the_guest_reports_as_wrong_is_a_problem() -> None:
    events = [
        line("seccomp", status="failed", reason="write allowed"),
        line("job-finished", job="7", status="killed"),
        line("error", what="seller", detail="hung"),
    ]
    assert console_problems(events, from_medium=False) == [
        "the seccomp self-test failed: write allowed",
        "job 7 finished killed",
        "the guest reported an error: seller: hung",
    ]
    assert console_problems([], from_medium=True) == [
        "the guest did not take its orders from the CPUSHARE medium"
    ]


def test_secure_boot_must_be_enforced_only_where_it_was_asked_for() -> None:
    off = [line("secureboot", state="unsupported")]
    assert console_problems(off, from_medium=False) == []
    assert console_problems(off, secure_boot=True, from_medium=False) == [
        "Secure Boot was not enforced (state=unsupported)"
    ]


def _report(sale: SaleFigures | None) -> Report:
    events = [
        line("init", 1.5, uptime="0.80"),
        line("seller-started", 5.0, cpu="0", nice="19"),
        line("seller-started", 5.1, cpu="1", nice="19"),
        line("job-leased", 6.0, job="1"),
        line("job-leased", 7.0, job="2"),
    ]
    return Report(milestones=events, wall_seconds=12.34, powered_off=True, sale=sale)


def test_the_table_shows_milestones_each_time_and_other_events_once() -> None:
    rows: list[str] = []
    format_report(_report(None), rows.append)
    assert rows[0].split() == ["milestone", "uptime", "wall", "details"]
    assert rows[1].split() == ["init", "0.80s", "1.50s"]
    assert [r.split()[0] for r in rows[1:-1]] == [
        "init",
        "seller-started",
        "seller-started",
        "job-leased",
    ]
    assert "job=1" in rows[4] and "-" in rows[4].split()
    assert rows[-1] == "power off: clean after 12.3 s"


def test_the_table_of_a_sale_gives_its_figures() -> None:
    sale = SaleFigures(
        jobs=2,
        accepted=2,
        first_result_uptime=9.5,
        jobs_per_minute=4.0,
        coins=0.25,
        account="volunteer",
    )
    rows: list[str] = []
    format_report(_report(sale), rows.append)
    assert rows[-3].split()[:3] == ["first", "result", "9.50s"]
    assert not any(r.startswith("last result") for r in rows)
    assert rows[-2] == "jobs: 2/2 accepted; 4.0 jobs per minute; 0.250 coins credited to volunteer"


def test_every_run_has_the_same_json_shape() -> None:
    plain, sale = report_json(_report(None)), report_json(_report(SaleFigures(jobs=2)))
    assert plain.keys() == sale.keys()
    assert (plain["jobs"], plain["accepted"], plain["jobs_per_minute"]) == (0, 0, None)
    assert sale["jobs"] == 2 and plain["ok"] is True
    assert plain["milestones"][0] == {  # type: ignore[index]
        "event": "init",
        "fields": {"event": "init", "uptime": "0.80"},
        "wall": 1.5,
    }
