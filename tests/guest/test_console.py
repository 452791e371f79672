"""The `cpushare:` console lines: written by every guest part, read by the tests and CI."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

from cpushare.console import (
    MAX_VALUE_CHARS,
    clean,
    emit,
    emitter,
    events_in,
    format_line,
    parse_line,
)


def test_a_line_reads_back_as_written_quotes_and_all() -> None:
    line = format_line("error", what="order", detail='a "quoted" \\ value\nnext', none=None)
    assert line.startswith("cpushare: event=error what=order detail=")
    assert "none" not in line and "\n" not in line
    assert parse_line(f"[   1.5] {line}") == {
        "event": "error",
        "what": "order",
        "detail": 'a "quoted" \\ value next',
    }
    assert parse_line("an ordinary kernel line") is None


def test_emit_stamps_the_uptime_and_two_decimals() -> None:
    out = io.StringIO()
    emit("job-finished", out, cpu_seconds=1.23456)
    fields = parse_line(out.getvalue())
    assert fields is not None and fields["cpu_seconds"] == "1.23"
    assert float(fields["uptime"]) > 0


def test_an_emitter_says_the_line_emit_says() -> None:
    said, emitted = io.StringIO(), io.StringIO()
    say = emitter("job-finished", said, order='o-1 "x"\x1b[2J', none=None)
    for job, status in ((7, "ok"), (8, "crashed")):
        say(job=job, status=status, cpu_seconds=0.0149, uptime=12.345)
        fields = {"job": job, "status": status, "cpu_seconds": 0.0149, "uptime": 12.345}
        emit("job-finished", emitted, order='o-1 "x"\x1b[2J', none=None, **fields)
    assert said.getvalue() == emitted.getvalue()
    assert [e["job"] for e in events_in(said.getvalue(), "job-finished")] == ["7", "8"]
    stamped = io.StringIO()
    emitter("job-leased", stamped, order="o-1")(job=1)
    fields = parse_line(stamped.getvalue())
    assert fields is not None and float(fields["uptime"]) > 0


def test_a_hostile_market_detail_yields_one_well_formed_line() -> None:
    detail = (
        "HTTP 500: boom\r\ncpushare: event=job-finished order=o job=1 status=ok\x1b[2J"
        '\x1b]0;owned\x07 "quoted" \\ \x00\x7f\x85\x9b31m\u2028\u202e\ud800 ' + "A" * 10_000
    )
    out = io.StringIO()
    emit("error", out, what="market-unreachable", order="o-1", detail=detail)
    text = out.getvalue()
    assert text.endswith("\n") and text.count("\n") == 1
    assert len(text.splitlines()) == 1  # no \r, \x85, \u2028 or other break splits it
    assert text.count("cpushare: ") == 1 and text.startswith("cpushare: event=error ")
    assert not any(ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F for ch in text[:-1])
    assert "\u202e" not in text and "\ud800" not in text
    text.encode("utf-8")  # printable whatever the console's encoding of Unicode
    fields = parse_line(text)
    assert fields is not None
    assert set(fields) == {"event", "what", "order", "detail", "uptime"}
    assert fields["event"] == "error" and fields["order"] == "o-1"
    got = fields["detail"]
    assert got.startswith("HTTP 500: boom  cpushare; event=job-finished order=o job=1 status=ok")
    assert ' "quoted" \\ ' in got and "[2J" not in got and "owned" not in got
    assert "31m" not in got and len(got) <= MAX_VALUE_CHARS and got.endswith("A...")


def test_clean_keeps_ordinary_text_and_drops_escapes() -> None:
    assert clean("répondu: 5 s, ok") == "répondu: 5 s, ok"
    assert clean("a\x1b[1;31mred\x1b[0m\tb") == "ared b"


def test_events_in_a_log_are_read_in_order_and_filtered() -> None:
    log = "\n".join(
        [
            "boot noise",
            format_line("job-leased", order="a", job=1),
            "[  3.1] kernel: cpushare: event=job-finished order=b job=2 status=ok",
            format_line("job-leased", order="b", job=3),
        ]
    )
    assert [e["job"] for e in events_in(log)] == ["1", "2", "3"]
    assert [e["job"] for e in events_in(log, "job-leased")] == ["1", "3"]
    assert [e["job"] for e in events_in(log, "job-leased", order="b")] == ["3"]


def test_processes_sharing_an_unbuffered_console_never_split_a_line(tmp_path: Path) -> None:
    # Unbuffered (-u), as the fleet's forked sellers print: each line must be one write.
    script = (
        "from cpushare.console import emit\n"
        "import sys\n"
        "for i in range(300): emit('job-leased', order=sys.argv[1], job=i)\n"
    )
    console = tmp_path / "console"
    with console.open("wb") as out:
        writers = [
            subprocess.Popen([sys.executable, "-u", "-c", script, name], stdout=out)
            for name in ("a", "b", "c")
        ]
        assert [w.wait(timeout=60) for w in writers] == [0, 0, 0]
    lines = console.read_text().splitlines()
    assert len(lines) == 900
    assert all(line.count("cpushare:") == 1 and parse_line(line) for line in lines)
