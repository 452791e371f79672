"""A volunteer's own orders and what they download: the `.cpu` file, a CPUSHARE stick
image, and a personal live CD (the market's base ISO with the order in its order slot,
`diskformats.orderslot`: produced in milliseconds, the same bytes for the same order).

An order made here keeps its `.cpu` text (in the settings table, beside the leaderboard
flags) so that its account can download it again as a CD or a stick: whoever reads the
market's database can sell with it, as whoever holds the CD can. Orders the operator
issues (`livecd market order new`) keep only their secret's hash, shown once.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cpushare.order import MAX_CPU_SECONDS, MAX_MEMORY_MB, SellOrder, render_order
from diskformats import orderslot
from diskformats.errors import UserError
from diskformats.fat import make_fat_image
from market import accounts
from market.dialect import Connection
from market.errors import Conflict, Gone, MarketError, NotFound

STICK_LABEL = "CPUSHARE"  # the label the live CD looks for (cpushare.medium)
_SETTING = "order-file:"
# The order's terms a volunteer may choose, with the operator's defaults and bounds.
TERMS = {
    "nice": (19, 0, 19),
    "max_memory_mb": (256, 1, MAX_MEMORY_MB),
    "max_cpu_seconds": (60, 1, MAX_CPU_SECONDS),
}


def create_order(conn: Connection, owner: int, terms: dict[str, int]) -> tuple[str, str]:
    """A new sell order crediting account `owner`, on `terms` (checked against TERMS):
    its id and its `.cpu` text, kept for downloads."""
    row = conn.execute("SELECT name FROM accounts WHERE id = ?", (owner,)).fetchone()
    url = accounts.get_setting(conn, "public_url")
    if url is None:
        raise MarketError("the market's public URL is unknown: its operator starts it once")
    issued = accounts.create_order(conn, str(row[0]))
    order = SellOrder(
        market_url=url.rstrip("/"),
        order_id=issued.order_id,
        secret=issued.secret,
        account=issued.account,
        cert_sha256=accounts.get_setting(conn, "cert_sha256"),
        nice=terms["nice"],
        max_memory_mb=terms["max_memory_mb"],
        max_cpu_seconds=terms["max_cpu_seconds"],
    )
    text = render_order(order)
    accounts.set_setting(conn, _SETTING + issued.order_id, text)
    return issued.order_id, text


def check_terms(doc: dict[str, object]) -> dict[str, int]:
    """The terms of a request body (absent: the defaults); a MarketError names a bad one."""
    unknown = sorted(set(doc) - set(TERMS))
    if unknown:
        raise MarketError(f"unknown order field {unknown[0]!r}: use {', '.join(TERMS)}")
    terms = {}
    for name, (default, low, high) in TERMS.items():
        value = doc.get(name, default)
        if type(value) is not int or not low <= value <= high:
            raise MarketError(f"{name} must be an integer in {low}..{high}")
        terms[name] = value
    return terms


def order_file(conn: Connection, owner: int, order_id: str) -> tuple[str, str]:
    """(file name, `.cpu` text) of one of the account's own orders made through the API."""
    row = conn.execute(
        "SELECT revoked FROM orders WHERE id = ? AND account_id = ?", (order_id, owner)
    ).fetchone()
    if row is None:
        raise NotFound(f"no order {order_id!r} in this account")
    if row[0] is not None:
        raise Gone(f"order {order_id} is revoked: create a new one with POST /v1/orders")
    text = accounts.get_setting(conn, _SETTING + order_id)
    if text is None:
        raise Conflict(
            f"order {order_id} was issued by the operator and its secret shown once: "
            "create one with POST /v1/orders to download it"
        )
    return f"{order_id}.cpu", text


def stick_image(order_text: str, name: str = "cpushare.cpu") -> bytes:
    """A FAT image labelled CPUSHARE holding the order as `name`, ready for `dd` onto a
    stick; its bytes depend on the order alone."""
    volume_id = int.from_bytes(hashlib.sha256(order_text.encode()).digest()[:4], "little")
    return make_fat_image(
        {name: order_text.encode()}, label=STICK_LABEL, volume_id=volume_id, mtime=0
    )


@dataclass(frozen=True)
class PersonalIso:
    """A personal CD, streamed: the base's bytes with `slot` at `offset`."""

    base: Path
    offset: int
    slot: bytes
    size: int

    def chunks(self) -> Iterator[bytes]:
        return orderslot.patched(self.base, self.offset, self.slot)

    def read(self) -> bytes:
        return b"".join(self.chunks())


class NoLiveCd(NotFound):
    """The market serves no base ISO."""


_slots: dict[tuple[Path, int, int], int] = {}
_slots_lock = threading.Lock()


def personal_iso(base: Path | None, order_text: str, name: str = "cpushare.cpu") -> PersonalIso:
    """The base ISO with `order_text` as /etc/cpushare/`name` in its order slot. A
    MarketError in one line when there is no base or the base has no slot."""
    if base is None:
        raise NoLiveCd(
            "this market serves no live CD: its operator names one with "
            "`livecd market serve --livecd BASE.iso`"
        )
    try:
        offset = _slot_of(base)
        slot = orderslot.slot_image({name: order_text})
    except UserError as exc:
        raise MarketError(f"the market's live CD cannot carry orders: {exc}") from None
    return PersonalIso(base, offset, slot, base.stat().st_size)


def check_base(base: Path) -> None:
    """A MarketError in one line unless `base` is an ISO with an order slot."""
    try:
        _slot_of(base)
    except UserError as exc:
        raise MarketError(f"--livecd: {exc}") from None


def _slot_of(base: Path) -> int:
    # Looked up once per file: the directory tree is read again only when the base changed.
    try:
        stat = base.stat()
    except OSError as exc:
        raise UserError(f"{base}: cannot read it: {exc.strerror}") from None
    key = (base, stat.st_mtime_ns, stat.st_size)
    with _slots_lock:
        if key not in _slots:
            _slots.clear()
            _slots[key] = orderslot.find_slot(base)
        return _slots[key]
