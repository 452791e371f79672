"""A server that redirects an order download, or a buyer's API call, to another host
(which would then receive the order or the API key): refused, naming both addresses;
a redirect on the same host is still followed."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from click.testing import CliRunner

from cpushare.order import SellOrder
from livecd.cli import main
from livecd.orders import render_order
from market.buyer import BuyerClient, ClientError

ORDER = render_order(
    SellOrder(
        market_url="https://m.example.org",
        order_id="o-abcd",
        secret="s" * 20,
        account="lab",
        cert_sha256="ab" * 32,
    )
).encode()


class Redirector(BaseHTTPRequestHandler):
    """/away/...: to the same path on the other host; /here/...: on this host;
    anything else: the order, and a note of the Authorization header it came with."""

    other: ClassVar[str] = ""
    seen: ClassVar[list[str | None]] = []

    def do_GET(self) -> None:
        if self.path.startswith("/away/"):
            self._redirect(self.other + self.path[len("/away") :])
        elif self.path.startswith("/here/"):
            self._redirect(self.path[len("/here") :])
        else:
            self.seen.append(self.headers.get("Authorization"))
            self.send_response(200)
            self.send_header("Content-Length", str(len(ORDER)))
            self.end_headers()
            self.wfile.write(ORDER)

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def hosts() -> Iterator[tuple[str, str]]:
    """Two loopback hosts (127.0.0.1 and 127.0.0.2) serving Redirector; the first
    redirects /away/ to the second."""
    servers = [
        ThreadingHTTPServer((address, 0), Redirector) for address in ("127.0.0.1", "127.0.0.2")
    ]
    urls = [f"http://{s.server_address[0]}:{s.server_address[1]}" for s in servers]
    Redirector.other = urls[1]
    Redirector.seen = []
    threads = [threading.Thread(target=s.serve_forever) for s in servers]
    for thread in threads:
        thread.start()
    yield urls[0], urls[1]
    for server, thread in zip(servers, threads, strict=True):
        server.shutdown()
        thread.join()
        server.server_close()


def test_redirect_to_another_host_of_an_order_is_refused(
    hosts: tuple[str, str], tmp_path: Path
) -> None:
    here, there = hosts
    runner = CliRunner()
    out = tmp_path / "lab.cpu"
    refused = runner.invoke(main, ["order", "fetch", f"{here}/away/lab.cpu", "-o", str(out)])
    assert refused.exit_code == 2
    line = refused.output.strip()
    assert "\n" not in line and "redirects to another host" in line, refused.output
    assert f"{here}/away/lab.cpu" in line and f"{there}/lab.cpu" in line
    assert not out.exists() and Redirector.seen == []
    followed = runner.invoke(main, ["order", "fetch", f"{here}/here/lab.cpu", "-o", str(out)])
    assert followed.exit_code == 0, followed.output
    assert out.read_bytes() == ORDER


def test_redirect_to_another_host_of_the_api_key_is_refused(hosts: tuple[str, str]) -> None:
    here, there = hosts
    client = BuyerClient(f"{here}/away", "ck-secret")
    with pytest.raises(ClientError, match="redirects to another host") as refused:
        client.status()
    assert f"{here}/away/v1/status" in str(refused.value)
    assert f"{there}/v1/status" in str(refused.value)
    assert Redirector.seen == []
