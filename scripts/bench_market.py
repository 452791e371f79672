"""Market figures: lease + result round trips per second with many simulated sellers, and
the long-poll wake-up latency from a submit to the lease it releases.

Runs a real `livecd market serve` on loopback (SQLite, WAL, fsync per commit) and drives
it from one asyncio process with a minimal keep-alive HTTP/1.1 client, so that the client
costs as little CPU as possible. Goals: >= 1000 round trips/s with >= 200 sellers on two
cores; <= 50 ms median wake-up latency.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
import tempfile
import time
from pathlib import Path

from cpushare.jail import JobResult, Outcome
from cpushare.protocol import result_document
from livecd.market_process import MarketProcess
from livecd.toolchain import FSDITHER_SOURCE, build_job
from market.buyer import BuyerClient

JOB_SOURCE = FSDITHER_SOURCE
RESULT_BODY = json.dumps(
    result_document(JobResult(Outcome.OK, 0, b"P5\n1 1\n255\n\x00", 0.01, 0.01, ""))
).encode()


class Connection:
    """One keep-alive HTTP/1.1 connection: just enough protocol for this benchmark."""

    def __init__(self, port: int, authorization: str) -> None:
        self.port = port
        self.authorization = authorization
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: {self.authorization}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        header = await self.reader.readuntil(b"\r\n\r\n")
        status = int(header[9:12])
        length = 0
        for line in header.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        return status, await self.reader.readexactly(length) if length else b""

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def basic(order_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{order_id}:{secret}".encode()).decode()


async def seller_loop(conn: Connection, stop: float, counts: list[int]) -> None:
    lease_body = json.dumps({"wait": 0, "seller": "bench"}).encode()
    while time.monotonic() < stop:
        status, body = await conn.request("POST", "/v1/lease", lease_body)
        if status != 200:
            continue
        lease = json.loads(body)["lease"]
        status, _ = await conn.request("POST", f"/v1/leases/{lease}/result", RESULT_BODY)
        if status == 200:
            counts[0] += 1


async def round_trips(port: int, auths: list[str], seconds: float) -> float:
    conns = [Connection(port, auth) for auth in auths]
    counts = [0]
    # Warm up the connections (and the server) before the clock starts.
    await asyncio.gather(*(c.request("GET", "/v1/health") for c in conns))
    start = time.monotonic()
    await asyncio.gather(*(seller_loop(c, start + seconds, counts) for c in conns))
    elapsed = time.monotonic() - start
    for c in conns:
        c.close()
    return counts[0] / elapsed


async def wake_up_latency(
    port: int, seller_auths: list[str], buyer_auth: str, program: str, rounds: int
) -> list[float]:
    buyer = Connection(port, buyer_auth)
    submit = json.dumps({"program": program, "inputs": [base64.b64encode(b"x").decode()]}).encode()
    latencies: list[float] = []
    for _ in range(rounds):
        pollers = [Connection(port, auth) for auth in seller_auths]
        body = json.dumps({"wait": 30, "seller": "bench"}).encode()
        leases = [asyncio.create_task(c.request("POST", "/v1/lease", body)) for c in pollers]
        await asyncio.sleep(0.2)  # every poller is waiting now
        start = time.monotonic()
        await buyer.request("POST", "/v1/jobs", submit)
        _, pending = await asyncio.wait(leases, return_when=asyncio.FIRST_COMPLETED)
        latencies.append(time.monotonic() - start)
        for task in pending:
            task.cancel()
        for c in pollers:
            c.close()
        await asyncio.sleep(0.1)
    buyer.close()
    return latencies


def start_market(work: Path, sellers: int) -> tuple[MarketProcess, BuyerClient, str, list[str]]:
    """A market with an account, the fsdither program and `sellers` orders."""
    program = build_job([JOB_SOURCE], work / "fsdither.job").read_bytes()
    market = MarketProcess(work).start()
    api_key = market.account("bench").api_key
    buyer = BuyerClient(market.url, api_key)
    sha = buyer.upload_program(program)
    orders = [market.order("bench", work / f"o{i}.cpu") for i in range(sellers)]
    return market, buyer, sha, [basic(o.order_id, o.secret) for o in orders]


def bench_round_trips(sellers: int, seconds: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        market, buyer, sha, auths = start_market(Path(tmp), sellers)
        try:
            # More jobs than the run can take: sellers never find the queue empty.
            for start in range(0, int(seconds * 3000), 1000):
                buyer.submit(sha, [str(i).encode() for i in range(start, start + 1000)])
            rate = asyncio.run(round_trips(market.port, auths, seconds))
        finally:
            market.stop()
    print(
        f"market: {rate:.0f} lease+result round trips/s with {sellers} concurrent sellers "
        f"on loopback, SQLite with fsync per commit (goal >= 1000)"
    )


def bench_wake_up(pollers: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        market, buyer, sha, auths = start_market(Path(tmp), pollers)
        try:
            api_key = buyer.session.headers["Authorization"]
            latencies = asyncio.run(wake_up_latency(market.port, auths, str(api_key), sha, rounds))
        finally:
            market.stop()
    median = statistics.median(latencies) * 1000
    print(
        f"market: long-poll wake-up submit->lease median {median:.1f} ms, "
        f"max {max(latencies) * 1000:.1f} ms over {rounds} rounds with {pollers} "
        f"waiting sellers (goal <= 50 ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sellers", type=int, default=200, help="concurrent simulated sellers")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the throughput run")
    parser.add_argument("--pollers", type=int, default=20, help="sellers waiting for a job")
    parser.add_argument("--rounds", type=int, default=30, help="wake-up latency samples")
    args = parser.parse_args()
    bench_round_trips(args.sellers, args.seconds)
    bench_wake_up(args.pollers, args.rounds)


if __name__ == "__main__":
    main()
