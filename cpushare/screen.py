"""The volunteer's view of the live CD, on its first console.

The fleet (`cpushare.seller.fleet --screen /dev/tty1`) paints it every few seconds into
/run/cpushare/screen, from what the live system leaves in /run: its own state line, each
seller's status file, the addresses DHCP gave. It reads those files only, so the frame
tells the truth when the sellers are stuck, gone, or never started; and it paints a last
frame when it stops selling. tty1 shows the file with busybox (/lib/cpushare/screen): no
second interpreter, whose memory a machine with little would rather give to its jobs.
`python3 -m cpushare.screen --once` prints a frame as text.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import unicodedata
from pathlib import Path

from cpushare.console import clean
from cpushare.record import record
from cpushare.seller.status import SellerStatus, boottime, read_statuses

REFRESH_SECONDS = 3.0
# What a console that does not say its size has (the VGA text console); the screen leaves
# the last column empty, since a character written there wraps on some consoles.
DEFAULT_COLUMNS = 80
# A long last error (a market's message) is wrapped onto at most this many lines.
ERROR_LINES = 3
# A seller asks the market at least every lease wait (30 s): silence for longer than this
# means the market no longer answers.
REACHABLE_SECONDS = 75.0
RELEASE = Path("/etc/cpushare-release")
RUN = Path("/run/cpushare")
NET = Path("/run/net")
# Under RUN: the frame as terminal output (`draw`), replaced whole at every repaint.
FRAME = "screen"


@record(frozen=True)
class View:
    """Everything one frame shows."""

    release: str
    state: str
    addresses: list[str]
    sellers: dict[str, SellerStatus]
    now: float  # seconds since boot


def _first_line(path: Path, default: str) -> str:
    try:
        return path.read_text().strip().splitlines()[0]
    except (OSError, IndexError):
        return default


def look(run: Path = RUN, net: Path = NET, release: Path = RELEASE) -> View:
    """The live system's state, as the files under /run say it now."""
    addresses = [
        f"{p.name.removesuffix('.addr')} {_first_line(p, '?')}" for p in sorted(net.glob("*.addr"))
    ]
    return View(
        release=_first_line(release, "CPUShare live CD"),
        state=_first_line(run / "state", "starting"),
        addresses=addresses,
        sellers=read_statuses(run / "status"),
        now=boottime(),
    )


def market_line(view: View) -> str:
    """Whether the market answers, judged by the sellers' last exchanges with it."""
    sellers = list(view.sellers.values())
    seen = [s.market_seen for s in sellers if s.market_seen is not None]
    if seen and view.now - max(seen) < REACHABLE_SECONDS:
        return f"reachable (answered {view.now - max(seen):.0f} s ago)"
    errors = [s.last_error for s in sellers if s.last_error]
    for prefix, verdict in (("market-refused", "refuses"), ("market-unreachable", "unreachable")):
        found = [e for e in errors if e.startswith(prefix)]
        if found:
            return f"{verdict}: {found[0].removeprefix(prefix + ': ')}"
    return "not asked yet" if not seen else "no answer for a while"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02}:{secs:02}"


def terminal_width(tty: Path | None = None) -> int:
    """The columns the screen may fill, less the last one: the width of the terminal
    `tty` if given (DEFAULT_COLUMNS if it cannot say), else COLUMNS, else what standard
    output's terminal says, else DEFAULT_COLUMNS."""
    return max(20, _terminal_columns(tty) - 1)


def _terminal_columns(tty: Path | None) -> int:
    if tty is not None:
        try:
            fd = os.open(tty, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError:
            return DEFAULT_COLUMNS
        try:
            return os.get_terminal_size(fd).columns or DEFAULT_COLUMNS
        except OSError:
            return DEFAULT_COLUMNS
        finally:
            os.close(fd)
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    try:
        return os.get_terminal_size().columns or DEFAULT_COLUMNS  # standard output's
    except OSError:
        return DEFAULT_COLUMNS


def _columns(ch: str) -> int:
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def fit(text: str, width: int) -> str:
    """`text` made safe (`console.clean`) and cut to at most `width` columns (wide East
    Asian characters take two)."""
    out, used = [], 0
    for ch in clean(text):
        used += _columns(ch)
        if used > width:
            break
        out.append(ch)
    return "".join(out)


def render(view: View, width: int = DEFAULT_COLUMNS - 1) -> list[str]:
    """The frame's lines, each made safe and at most `width` columns."""
    sellers = view.sellers
    first = next(iter(sellers.values()), None)
    uptime = "up " + _duration(view.now)
    lines = [
        f"{fit(view.release, width - len(uptime) - 1):<{width - len(uptime)}}{uptime}",
        view.state,
        "",
        f"account   {first.account if first else '-'}",
        f"network   {', '.join(view.addresses) or 'no address yet (DHCP on every wired link)'}",
        f"market    {first.market if first else '-'}",
        f"          {market_line(view)}",
        "",
        f"{'seller':<22}{'state':<10}{'job':>8}{'jobs':>8}{'CPU s':>12}{'coins':>12}",
    ]
    for name, s in sellers.items():
        job = "-" if s.job is None else str(s.job)
        lines.append(
            f"{fit(name, 21):<22}{fit(s.state, 9):<10}{job:>8}{s.jobs_done:>8}"
            f"{s.cpu_seconds:>12.1f}{s.coins:>12.3f}"
        )
    if len(sellers) > 1:
        lines.append(
            f"{'all':<22}{'':<10}{'':>8}{sum(s.jobs_done for s in sellers.values()):>8}"
            f"{sum(s.cpu_seconds for s in sellers.values()):>12.1f}"
            f"{sum(s.coins for s in sellers.values()):>12.3f}"
        )
    errors = [(n, s.last_error) for n, s in sellers.items() if s.last_error]
    if errors:
        import textwrap  # only when there is an error to show

        error = clean(f"last error ({errors[-1][0]}): {errors[-1][1]}")
        lines += ["", *textwrap.wrap(error, width, max_lines=ERROR_LINES, placeholder=" ...")]
    lines += [
        "",
        "This CD uses your CPU only: it never reads or writes your disks.",
        "Root shell: Alt+F2.  Power button: jobs go back to the market, then power off.",
    ]
    return [fit(line, width) for line in lines]


def draw(lines: list[str]) -> str:
    """Terminal output that repaints the screen in place: home, each line cleared to its
    end, then everything below cleared (no blank flash between frames)."""
    return "\033[H" + "".join(f"{line}\033[K\n" for line in lines) + "\033[J"


class Painter:
    """Paints the frame into RUN/screen for the terminal `tty`: now (`paint`), or when
    REFRESH_SECONDS have passed since the last time (`tick`)."""

    def __init__(self, run: Path, tty: Path, net: Path = NET) -> None:
        self.run, self.tty, self.net = run, tty, net
        self.due = 0.0

    def tick(self) -> None:
        if time.monotonic() >= self.due:
            self.paint()

    def paint(self) -> None:
        """The frame, written whole: the console's reader never shows half of one. A
        failure to write costs this frame only."""
        self.due = time.monotonic() + REFRESH_SECONDS
        frame = draw(render(look(self.run, self.net), terminal_width(self.tty)))
        tmp = self.run / f".{FRAME}.tmp"
        with contextlib.suppress(OSError):
            tmp.write_text(frame)
            tmp.replace(self.run / FRAME)


def main(argv: list[str] | None = None) -> int:
    import argparse  # not in the fleet, which paints the screen

    parser = argparse.ArgumentParser(
        prog="python3 -m cpushare.screen", description="Print the status screen's frame."
    )
    parser.add_argument("--run", type=Path, default=RUN, help="the live system's run folder")
    parser.add_argument("--net", type=Path, default=NET, help="where DHCP notes addresses")
    parser.add_argument("--once", action="store_true", help="as text (the default)")
    args = parser.parse_args(argv)
    print("\n".join(render(look(args.run, args.net), terminal_width())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
