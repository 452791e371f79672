"""Sell orders on the host: render `.cpu` files from their template, write and fetch them."""

from __future__ import annotations

import hashlib
import json
import os
import ssl
import tempfile
from pathlib import Path

import jinja2
import requests

from cpushare.order import MAX_ORDER_BYTES, OrderError, SellOrder, parse_order, parse_order_bytes
from livecd.errors import UserError
from market.safehttp import SameHostSession, UnsafeURL, check_url

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


def _toml_string(value: object) -> str:
    # A JSON string with only ASCII is a valid TOML basic string.
    return json.dumps(str(value), ensure_ascii=True)


def render_order(order: SellOrder) -> str:
    """The text of a `.cpu` file for `order`, checked by parsing it back."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["toml"] = _toml_string
    text = env.get_template("order.cpu.j2").render(order=order)
    try:
        parsed = parse_order(text)
    except OrderError as exc:
        raise UserError(f"not a valid order: {_problems(exc)}") from None
    if parsed != order:
        raise UserError("the rendered order does not read back as the same order")
    return text


def write_atomically(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write `data` to `path` through a temporary file and a rename: never half-written."""
    path = path.absolute()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_order(order: SellOrder, path: Path) -> None:
    """Write `order` to `path` (mode 0600: it holds the order's secret)."""
    try:
        write_atomically(path, render_order(order).encode())
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror}") from None


def cert_pin(cert_pem: Path) -> str:
    """sha256 (hex) of the DER form of the PEM certificate in `cert_pem`: the order's pin."""
    try:
        der = ssl.PEM_cert_to_DER_cert(cert_pem.read_text())
    except OSError as exc:
        raise UserError(f"cannot read {cert_pem}: {exc.strerror}") from None
    except ValueError:
        raise UserError(f"{cert_pem} is not a PEM certificate") from None
    return hashlib.sha256(der).hexdigest()


def check_order_file(path: Path) -> SellOrder:
    """The order in `path`, or a UserError naming the file and every problem in it."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return parse_order_bytes(data)
    except OrderError as exc:
        raise UserError(f"{path}: {_problems(exc)}") from None


def _problems(exc: OrderError) -> str:
    count = len(exc.problems)
    return f"{count} problem{'s' if count > 1 else ''}: {exc}"


def fetch_order(url: str, out: Path, *, ca_bundle: Path | None = None) -> SellOrder:
    """Download a `.cpu` file (https, or http on loopback; redirects on the same host
    only: it holds a secret), validate it, and only then write it to `out`."""
    verify: bool | str = str(ca_bundle) if ca_bundle else True
    try:
        check_url(url)
    except UnsafeURL as exc:
        raise UserError(f"will not fetch an order (it holds a secret): {exc}") from None
    try:
        with (
            SameHostSession() as session,
            session.get(url, timeout=30, stream=True, verify=verify) as reply,
        ):
            if reply.status_code != 200:
                raise UserError(f"{url}: the server answered HTTP {reply.status_code}")
            data = reply.raw.read(MAX_ORDER_BYTES + 1, decode_content=True)
    except requests.RequestException as exc:
        raise UserError(f"cannot fetch {url}: {exc}") from None
    try:
        order = parse_order_bytes(data)
    except OrderError as exc:
        raise UserError(
            f"{url} is not a valid sell order, nothing written: {_problems(exc)}"
        ) from None
    try:
        write_atomically(out, data)
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror}") from None
    return order
