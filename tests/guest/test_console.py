"""The `cpushare:` console lines: written by every guest part, read by the tests and CI."""

from __future__ import annotations

import io

from cpushare.console import emit, format_line, parse_line


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
