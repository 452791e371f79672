"""The CPUSHARE medium: a small FAT image that carries `.cpu` orders into the guest as a
removable USB disk, the way a volunteer brings them on a stick."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from diskformats.fat import make_fat_image
from livecd.files import atomic_write

MEDIUM_LABEL = "CPUSHARE"
# Fixed so that the medium is the same bytes on every run.
MEDIUM_VOLUME_ID = 0x43505553
MEDIUM_MTIME = 1_700_000_000


def make_medium(files: Mapping[str, bytes], out: Path) -> Path:
    """A FAT image labelled CPUSHARE holding `files` (name -> bytes) at its root."""
    image = make_fat_image(
        files, label=MEDIUM_LABEL, volume_id=MEDIUM_VOLUME_ID, mtime=MEDIUM_MTIME
    )
    atomic_write(out, image, 0o644)
    return out
