"""The sell orders built into the CD: read from files or URLs, validated, and rendered
again (`cpushare.order.render_order`) into `/etc/cpushare/NAME.cpu`."""

from __future__ import annotations

import hashlib
import stat
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cpushare.order import SellOrder, render_order
from diskformats.cpio import Entry
from livecd.errors import BuildError, UserError
from livecd.orders import check_order_file, fetch_order


@dataclass(frozen=True)
class BuiltinOrder:
    name: str  # file name in /etc/cpushare
    text: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


def load_orders(specs: Sequence[str], base: Path) -> list[BuiltinOrder]:
    """Each spec is a .cpu file (relative to `base`) or an http(s) URL. An invalid order
    stops the build with the file and its problems named."""
    orders = []
    for spec in specs:
        try:
            order = _fetched(spec) if "://" in spec else check_order_file(base / spec)
        except UserError as exc:
            raise BuildError(f"order {spec}: {exc}") from None
        name = Path(spec.rstrip("/").rsplit("/", 1)[-1]).stem + ".cpu"
        orders.append(BuiltinOrder(name, render_order(order)))
    names = [o.name for o in orders]
    if len(set(names)) != len(names):
        raise BuildError(f"two orders would both be /etc/cpushare/{_duplicate(names)}: rename one")
    return orders


def _fetched(url: str) -> SellOrder:
    with tempfile.TemporaryDirectory(prefix="livecd-order-") as tmp:
        return fetch_order(url, Path(tmp) / "order.cpu")


def _duplicate(names: list[str]) -> str:
    return next(n for n in names if names.count(n) > 1)


def order_entries(orders: Sequence[BuiltinOrder]) -> list[Entry]:
    return [
        Entry(f"etc/cpushare/{o.name}", stat.S_IFREG | 0o644, data=o.text.encode()) for o in orders
    ]
