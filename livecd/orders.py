"""Sell orders on the host: write, check and fetch `.cpu` files (the format and its
rendering are the guest's, in `cpushare.order`)."""

from __future__ import annotations

from pathlib import Path

import requests

from cpushare.order import (
    MAX_ORDER_BYTES,
    OrderError,
    SellOrder,
    parse_order_bytes,
    render_order,
)
from cpushare.order import cert_pin as pin_of
from livecd.errors import UserError
from livecd.files import atomic_write
from market.safehttp import SameHostSession, UnsafeURL, check_url

# An order holds its secret: only its owner reads it.
SECRET_MODE = 0o600


def write_order(order: SellOrder, path: Path) -> None:
    """Write `order` to `path` (mode 0600: it holds the order's secret)."""
    try:
        text = render_order(order)
    except OrderError as exc:
        raise UserError(f"not a valid order: {_problems(exc)}") from None
    try:
        atomic_write(path, text.encode(), SECRET_MODE)
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror}") from None


def cert_pin(cert_pem: Path) -> str:
    """The pin (`cpushare.order.cert_pin`) of the PEM certificate in the file `cert_pem`."""
    try:
        return pin_of(cert_pem.read_text())
    except OSError as exc:
        raise UserError(f"cannot read {cert_pem}: {exc.strerror}") from None
    except ValueError:
        raise UserError(f"{cert_pem} is not a PEM certificate") from None


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
        atomic_write(out, data, SECRET_MODE)
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror}") from None
    return order
