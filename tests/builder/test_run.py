"""External commands: every one is logged (what `livecd -v` shows), failures are one line."""

from __future__ import annotations

import logging

import pytest

from livecd.errors import UserError
from livecd.run import run, streamed


def test_a_command_is_logged_and_its_output_kept(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="livecd.run"):
        proc = run(["printf", "%s", "two words"])
    assert proc.stdout == b"two words"
    assert "run: printf %s 'two words'" in caplog.messages


def test_a_failure_is_one_line_quoting_the_last(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(UserError, match=r"^sh failed: second$"):
        run(["sh", "-c", "echo first >&2; echo second >&2; exit 3"])


def test_unchecked_the_caller_reads_the_exit_status() -> None:
    assert run(["sh", "-c", "exit 3"], check=False).returncode == 3


def test_a_stream_is_logged_read_and_waited_for(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="livecd.run"), streamed(["seq", "3"]) as out:
        assert out.read() == b"1\n2\n3\n"
    assert "run: seq 3" in caplog.messages
