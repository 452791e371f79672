"""The buyer's client for the market API (host side, on requests): what the CLI calls."""

from __future__ import annotations

import base64
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import requests

from diskformats.files import atomic_file
from market.safehttp import SameHostSession, UnsafeURL, check_url


class ClientError(RuntimeError):
    """The market refused a request or could not be reached; the message says which."""


class BuyerClient:
    """An account's session with one market."""

    def __init__(self, url: str, api_key: str, *, cacert: Path | None = None) -> None:
        self.url = url.rstrip("/")
        try:
            check_url(self.url)
        except UnsafeURL as exc:
            raise ClientError(f"will not send the API key: {exc}") from None
        self.session = SameHostSession()
        self.session.headers["Authorization"] = f"Bearer {api_key}"
        # Given per request: a session-wide setting loses to $REQUESTS_CA_BUNDLE.
        self.verify: str | bool = str(cacert) if cacert else True

    def _call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        try:
            reply = self.session.request(
                method, self.url + path, timeout=120, verify=self.verify, **kwargs
            )
        except requests.RequestException as exc:
            raise ClientError(f"cannot reach the market at {self.url}: {exc}") from None
        if reply.status_code >= 400:
            raise ClientError(f"the market refused {method} {path}: {_error_text(reply)}")
        return reply

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        reply = self._call(method, path, **kwargs)
        try:
            return reply.json()
        except ValueError:
            raise ClientError(f"the market sent a reply that is not JSON to {path}") from None

    def upload_program(self, program: bytes) -> str:
        doc = self._json(
            "PUT",
            "/v1/programs",
            data=program,
            headers={"Content-Type": "application/octet-stream"},
        )
        return str(doc["sha256"])

    def submit(
        self,
        program: str,
        inputs: Sequence[bytes],
        *,
        replicas: int | None = None,
        limits: dict[str, int | float] | None = None,
    ) -> list[int]:
        """Queue one job per input. `replicas` None: adaptive replication (the default);
        k: k agreeing hosts, always (1: trust every seller, for a group's own machines)."""
        body: dict[str, Any] = {
            "program": program,
            "inputs": [base64.b64encode(data).decode() for data in inputs],
            "limits": limits or {},
        }
        if replicas is not None:
            body["replicas"] = replicas
        return [int(i) for i in self._json("POST", "/v1/jobs", json=body)["jobs"]]

    def job(self, job_id: int) -> dict[str, Any]:
        doc: dict[str, Any] = self._json("GET", f"/v1/jobs/{job_id}")
        return doc

    def jobs(self, state: str | None = None) -> Iterator[dict[str, Any]]:
        """Every job of the account (in one state), page by page."""
        after = 0
        while True:
            params: dict[str, str | int] = {"after": after, "limit": 1000}
            if state:
                params["state"] = state
            page = self._json("GET", "/v1/jobs", params=params)["jobs"]
            yield from page
            if len(page) < 1000:
                return
            after = page[-1]["id"]

    def cancel(self, job_id: int) -> None:
        self._json("POST", f"/v1/jobs/{job_id}/cancel")

    def output(self, job_id: int) -> bytes:
        return self._call("GET", f"/v1/jobs/{job_id}/output").content

    def status(self) -> dict[str, Any]:
        doc: dict[str, Any] = self._json("GET", "/v1/status")
        return doc

    def create_order(self, **terms: int) -> str:
        """A new sell order crediting this account (terms: nice, max_memory_mb,
        max_cpu_seconds): its `.cpu` text."""
        return self._call("POST", "/v1/orders", json=terms).text

    def revoke_order(self, order_id: str) -> None:
        """Revoke one of the account's orders and every host enrolled with it."""
        self._json("POST", f"/v1/orders/{order_id}/revoke")

    def livecd(self, order_id: str, out: Path) -> int:
        """Download the personal live CD of one of the account's orders into `out`
        (whole or not at all); its size."""
        return self._download(f"/v1/orders/{order_id}/livecd.iso", out)

    def stick(self, order_id: str, out: Path) -> int:
        """Download the CPUSHARE stick image of one of the account's orders into `out`."""
        return self._download(f"/v1/orders/{order_id}/stick.img", out)

    def _download(self, path: str, out: Path) -> int:
        reply = self._call("GET", path, stream=True)
        size = 0
        try:
            with reply, atomic_file(out) as (f, _):
                for chunk in reply.iter_content(1 << 20):
                    f.write(chunk)
                    size += len(chunk)
                expected = reply.headers.get("Content-Length")
                if expected is not None and int(expected) != size:
                    raise ClientError(f"the download of {path} broke off at {size} bytes")
        except requests.RequestException as exc:
            raise ClientError(f"the download of {path} broke off: {exc}") from None
        except OSError as exc:
            raise ClientError(f"cannot write {out}: {exc.strerror}") from None
        return size


def _error_text(reply: requests.Response) -> str:
    try:
        return f"HTTP {reply.status_code}: {reply.json()['error']}"
    except (ValueError, KeyError, TypeError):
        return f"HTTP {reply.status_code}"
