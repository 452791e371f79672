"""The live CD's order slot: `/live/order.img`, a file of fixed size that the boot loaders
load as a second initramfs after the main one. It holds the CD's own sell orders as
`/etc/cpushare/NAME.cpu` in a newc archive, zero-padded (the kernel skips zeros between
archives); the stock CD's slot is all zeros.

Because its size is fixed, a personal CD is the base ISO with only the slot's extent
rewritten: no ISO is rebuilt, the boot records, GPT, MBR and the signed ESP stay byte for
byte, and the same order on the same base gives the same bytes. The builder writes the
slot (`slot_image({})`); the market finds it in a base (`find_slot`) and streams the base
with another slot in its place (`patched`).
"""

from __future__ import annotations

import io
import re
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path

from pycdlib.pycdlibexception import PyCdlibException

from diskformats.cpio import Entry, write_newc
from diskformats.errors import UserError
from diskformats.isoread import open_iso

SLOT_PATH = "live/order.img"  # in the ISO
SLOT_SIZE = 64 * 1024  # an order is about 1 KiB; a whole number of 2 KiB sectors
ORDERS = "etc/cpushare"
_CPIO_MAGIC = b"070701"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\.cpu")


def slot_image(orders: Mapping[str, str]) -> bytes:
    """The slot's bytes for `orders` ({file name: .cpu text}); no orders: all zeros. The
    files carry no time, so the bytes depend on the orders alone."""
    if not orders:
        return bytes(SLOT_SIZE)
    for name in orders:
        if not _NAME.fullmatch(name):
            raise UserError(f"order file name {name!r} is not NAME.cpu (letters, digits, ._-)")
    buf = io.BytesIO()
    entries = [
        Entry(f"{ORDERS}/{name}", stat.S_IFREG | 0o644, data=text.encode())
        for name, text in sorted(orders.items())
    ]
    size = write_newc(entries, buf, mtime=0)
    if size > SLOT_SIZE:
        raise UserError(
            f"the orders take {size} bytes, more than the CD's order slot holds "
            f"({SLOT_SIZE}): give fewer or shorter orders"
        )
    return buf.getvalue() + bytes(SLOT_SIZE - size)


def find_slot(iso: Path) -> int:
    """The byte offset of the order slot in the ISO at `iso`. A UserError says why when
    the file is no ISO or an ISO without a slot (built before there were slots)."""
    try:
        with iso.open("rb") as f:
            offset = _slot_offset(iso, f)
            f.seek(offset)
            head = f.read(len(_CPIO_MAGIC))
    except OSError as exc:
        raise UserError(f"{iso}: cannot read it: {exc.strerror}") from None
    if head not in (_CPIO_MAGIC, bytes(len(_CPIO_MAGIC))):
        raise UserError(f"{iso}: /{SLOT_PATH} is not an order slot (neither zeros nor a cpio)")
    return offset


def _slot_offset(path: Path, f: io.BufferedReader) -> int:
    iso = open_iso(path, f)
    try:
        record = iso.get_record(rr_path=f"/{SLOT_PATH}")
        size, lba = record.get_data_length(), record.extent_location()
    except PyCdlibException:
        raise UserError(
            f"{path}: this ISO has no order slot (/{SLOT_PATH}): build it again with this "
            "version of livecd"
        ) from None
    finally:
        iso.close()
    if size != SLOT_SIZE:
        raise UserError(
            f"{path}: /{SLOT_PATH} is {size} bytes, not the order slot's {SLOT_SIZE}: "
            "build it again with this version of livecd"
        )
    return int(lba) * 2048


def patched(iso: Path, offset: int, slot: bytes, chunk: int = 1 << 20) -> Iterator[bytes]:
    """The bytes of the ISO at `iso` in chunks, with `slot` in place of the slot at
    `offset` (from `find_slot`): for streaming, never the whole image in memory."""
    if len(slot) != SLOT_SIZE:
        raise ValueError(f"a slot is {SLOT_SIZE} bytes, not {len(slot)}")
    with iso.open("rb") as f:
        yield from _copy(f, offset, chunk)
        yield slot
        f.seek(offset + SLOT_SIZE)
        while data := f.read(chunk):
            yield data


def _copy(f: io.BufferedReader, size: int, chunk: int) -> Iterator[bytes]:
    while size > 0:
        data = f.read(min(chunk, size))
        if not data:
            raise UserError(f"{f.name}: the ISO ends before its order slot")
        size -= len(data)
        yield data
