"""A volunteer's own orders and what they download: the `.cpu` file, a CPUSHARE stick
image, and a personal live CD (the market's base ISO with the order in its order slot,
`diskformats.orderslot`: produced in milliseconds, the same bytes for the same order).

An order made here (through the API or the pages) keeps its terms, and its secret is
derived from the market's signing key (`market.keys`), so its account can download it
again as a file, a CD or a stick while the database keeps only the secret's hash. Orders
the operator issues (`livecd market order new`) have a random secret, shown once.
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
from market import accounts, keys
from market.dialect import Connection
from market.errors import Conflict, Gone, MarketError, NotFound

STICK_LABEL = "CPUSHARE"  # the label the live CD looks for (cpushare.medium)
# The order's terms a volunteer may choose, with the operator's defaults and bounds.
TERMS = {
    "nice": (19, 0, 19),
    "max_memory_mb": (256, 1, MAX_MEMORY_MB),
    "max_cpu_seconds": (60, 1, MAX_CPU_SECONDS),
}


def create_order(conn: Connection, owner: int, terms: dict[str, int]) -> tuple[str, str]:
    """A new sell order crediting account `owner`, on `terms` (checked against TERMS):
    its id and its `.cpu` text."""
    if accounts.get_setting(conn, "public_url") is None:
        raise MarketError(
            "the market's public URL is unknown: its operator starts it with "
            "`livecd market serve --public-url`"
        )
    key = keys.ensure(conn)
    name = conn.execute("SELECT name FROM accounts WHERE id = ?", (owner,)).fetchone()[0]
    issued = accounts.create_order(conn, str(name), lambda o: keys.order_secret(key, o))
    conn.execute(
        "UPDATE orders SET web_terms = ? WHERE id = ?",
        (",".join(str(terms[t]) for t in TERMS), issued.order_id),
    )
    return issued.order_id, order_file(conn, owner, issued.order_id)[1]


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
    """(file name, `.cpu` text) of one of the account's own orders made by a volunteer."""
    row = conn.execute(
        "SELECT o.revoked, o.web_terms, a.name FROM orders o JOIN accounts a "
        "ON a.id = o.account_id WHERE o.id = ? AND o.account_id = ?",
        (order_id, owner),
    ).fetchone()
    if row is None:
        raise NotFound(f"no order {order_id!r} in this account")
    revoked, terms, account = row
    if revoked is not None:
        raise Gone(f"order {order_id} is revoked: make a new one")
    key = keys.load(conn)
    url = accounts.get_setting(conn, "public_url")
    if terms is None or key is None or url is None:
        raise Conflict(
            f"order {order_id} was issued by the operator and its secret shown once: "
            "make one with POST /v1/orders or on the orders page to download it"
        )
    nice, memory, cpu = (int(v) for v in str(terms).split(","))
    order = SellOrder(
        market_url=url.rstrip("/"),
        order_id=order_id,
        secret=keys.order_secret(key, order_id),
        account=str(account),
        cert_sha256=accounts.get_setting(conn, "cert_sha256"),
        nice=nice,
        max_memory_mb=memory,
        max_cpu_seconds=cpu,
    )
    return f"{order_id}.cpu", render_order(order)


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
