"""The market's HTTP path alone: CPU of the market process per request over keep-alive
connections, for requests that write nothing (so the figure is the HTTP layer's, steadier
on a loaded machine than a whole round trip, which waits on the writer and its fsync).

Runs a real `livecd market serve` on loopback (SQLite) and drives it from one asyncio
process with a minimal HTTP/1.1 client: `GET /v1/health`; a seller's `POST /v1/lease`
without credentials (refused with 401 before its body is read); and a seller's
`GET /v1/programs/SHA` for a program it holds no lease on (authenticated, answered 404).
Each run's figure is the market's CPU microseconds per request; the median of the runs
is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import statistics
import tempfile
import time
from pathlib import Path

from livecd.market_process import MarketProcess

CONNECTIONS = 50


def _cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _client(port: int, request: bytes, stop: float, counts: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    while time.monotonic() < stop:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        await reader.readexactly(length)
        counts[0] += 1
    writer.close()


async def _load(port: int, request: bytes, seconds: float) -> int:
    counts = [0]
    stop = time.monotonic() + seconds
    await asyncio.gather(*(_client(port, request, stop, counts) for _ in range(CONNECTIONS)))
    return counts[0]


def _requests(market: MarketProcess) -> dict[str, bytes]:
    order = market.order("bench")
    host = market.enroll(order, seats=1)
    basic = base64.b64encode(f"{host.id}:{host.secret}".encode()).decode()
    body = b'{"wait":0,"seat":0}'
    return {
        "health": b"GET /v1/health HTTP/1.1\r\nHost: bench\r\n\r\n",
        "refused lease": b"POST /v1/lease HTTP/1.1\r\nHost: bench\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body),
        "seller 404": f"GET /v1/programs/{'0' * 64} HTTP/1.1\r\nHost: bench\r\n"
        f"Authorization: Basic {basic}\r\n\r\n".encode(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each run")
    parser.add_argument("--runs", type=int, default=3, help="runs of each request")
    args = parser.parse_args()
    figures: dict[str, list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp, MarketProcess(Path(tmp)) as market:
        market.start()
        assert market.process is not None
        pid = market.process.pid
        market.account("bench")
        requests = _requests(market)
        asyncio.run(_load(market.port, requests["health"], 0.5))  # warm up
        for _ in range(args.runs):
            for name, request in requests.items():
                before = _cpu(pid)
                done = asyncio.run(_load(market.port, request, args.seconds))
                spent = _cpu(pid) - before
                figures.setdefault(name, []).append((1e6 * spent / done, done / args.seconds))
    for name, runs in figures.items():
        print(
            f"market HTTP path, {name:13}: {statistics.median(r[0] for r in runs):5.1f} us of "
            f"market CPU per request ({statistics.median(r[1] for r in runs):.0f} requests/s, "
            f"{CONNECTIONS} connections, median of {len(runs)} runs; "
            f"load average {os.getloadavg()[0]:.1f})",
            flush=True,
        )


if __name__ == "__main__":
    main()
