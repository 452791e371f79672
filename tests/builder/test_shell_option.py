"""`cpushare.shell=ttySN`: the live system's root shell on a serial port only when the
kernel command line asks for it. The script /init runs (templates/rootfs), run here by
a POSIX shell on command lines of our own."""

from __future__ import annotations

import subprocess

import pytest

from livecd.templates import render

SCRIPT = render("rootfs/lib/cpushare/shell-option.j2", {})
GETTY = "ttyS1::respawn:/sbin/getty -n -l /bin/sh 115200 ttyS1\n"


def _run(cmdline: str) -> tuple[str, str]:
    done = subprocess.run(
        ["sh", "-c", SCRIPT], input=cmdline, capture_output=True, text=True, check=True
    )
    return done.stdout, done.stderr


@pytest.mark.parametrize(
    "cmdline",
    [
        "quiet console=tty0 console=ttyS0,115200",
        "quiet cpushare.sellers=2 shell=ttyS1 xcpushare.shell=ttyS1",
        "cpushare.shell",  # no value: not the option
        "",
    ],
)
def test_without_the_option_there_is_no_shell(cmdline: str) -> None:
    assert _run(cmdline + "\n") == ("", "")


def test_the_option_adds_a_getty_with_a_root_shell_on_that_port() -> None:
    assert _run("quiet cpushare.shell=ttyS1 console=ttyS0,115200\n") == (GETTY, "")
    out, _ = _run("cpushare.shell=ttyS2\n")
    assert out == GETTY.replace("ttyS1", "ttyS2")


def test_the_last_word_wins_as_for_every_option() -> None:
    assert _run("cpushare.shell=ttyS3 cpushare.shell=ttyS1\n") == (GETTY, "")
    out, err = _run("cpushare.shell=ttyS1 cpushare.shell=off\n")
    assert out == "" and "cpushare.shell=off" in err


@pytest.mark.parametrize("value", ["ttyS", "ttyS10", "tty1", "ttyS1;reboot", "../ttyS1", "off"])
def test_anything_but_a_serial_port_is_refused_in_one_line(value: str) -> None:
    out, err = _run(f"quiet cpushare.shell={value}\n")
    assert out == ""
    assert err == f"cpushare.shell={value} is not a serial port ttyS0 to ttyS9: no shell\n"


def test_busybox_inits_own_table_starts_no_serial_shell() -> None:
    inittab = render("rootfs/etc/inittab.j2", {"version": "0"})
    entries = [line for line in inittab.splitlines() if line and not line.startswith("#")]
    assert entries and not [line for line in entries if "ttyS" in line]
    # /init is what adds the line, from the kernel's command line.
    init = render("rootfs/init.j2", {"version": "0", "build_date": "2023-11-14"})
    assert "/lib/cpushare/shell-option </proc/cmdline" in init
