"""`livecd inspect`'s report of an ISO (`diskformats.isoread`) as text or JSON."""

from __future__ import annotations

import json
from dataclasses import asdict

from diskformats.isoread import MANIFEST, Gpt, IsoEntry, IsoReport, Volume

_LARGEST = 10


def to_json(report: IsoReport) -> str:
    return json.dumps(asdict(report), indent=2)


def render_text(report: IsoReport, *, all_files: bool) -> str:
    """The human-readable report: all files with `all_files`, else a top-level summary and
    the largest files."""
    v = report.volume
    lines = [
        f"ISO        {report.path}  {_size(report.file_size)}",
        f"Volume     {v.label!r}  system {v.system_id!r}  created {v.created}",
        f"           {v.blocks} blocks of {v.block_size} bytes ({_size(v.blocks * v.block_size)})"
        f"  application {v.application_id!r}",
        "Formats    " + ", ".join(_formats(v)),
    ]
    lines += _boot_lines(report)
    lines += _mbr_lines(report)
    lines += _gpt_lines(report.gpt)
    lines += _file_lines(report.files, all_files)
    if report.manifest_error:
        lines.append(f"Manifest   {report.manifest_error}")
    elif report.manifest is not None:
        lines.append(f"Manifest   /{MANIFEST}")
        lines += ["  " + line for line in json.dumps(report.manifest, indent=2).splitlines()]
    return "\n".join(lines)


def _formats(v: Volume) -> list[str]:
    formats = [f"ISO 9660 level {v.iso_level}"]
    if v.rock_ridge:
        formats.append(f"Rock Ridge {v.rock_ridge}")
    if v.joliet_level:
        formats.append(f"Joliet level {v.joliet_level}")
    return formats


def _boot_lines(report: IsoReport) -> list[str]:
    if not report.boot_entries:
        return ["El Torito  none"]
    lines = [f"El Torito  catalog {report.boot_catalog or '(not a file)'}"]
    for n, e in enumerate(report.boot_entries, start=1):
        lines.append(
            f"  {n}  {e.platform:<5} {'bootable' if e.bootable else 'not bootable':<12}"
            f" emulation {e.emulation:<5} load {e.load_sectors:>5} x 512"
            f"  LBA {e.lba:<6} {e.path or ''}".rstrip()
        )
    return lines


def _mbr_lines(report: IsoReport) -> list[str]:
    if report.mbr_disk_id is None:
        return ["MBR        none"]
    lines = [f"MBR        disk id {report.mbr_disk_id:#010x}"]
    for p in report.mbr_partitions:
        lines.append(
            f"  {p.number}  {'active' if p.bootable else '':<6}"
            f" type {p.type:#04x} {p.type_name:<14} start {p.start:<8} sectors {p.sectors:<8}"
            f" {p.path or ''}".rstrip()
        )
    return lines


def _gpt_lines(gpt: Gpt | None) -> list[str]:
    if gpt is None:
        return ["GPT        none"]
    checks = (
        f"header CRC {'ok' if gpt.header_crc_ok else 'WRONG'}, "
        f"entries CRC {'ok' if gpt.entries_crc_ok else 'WRONG'}, backup {gpt.backup}"
    )
    lines = [f"GPT        disk {gpt.disk_guid}  {checks}"]
    for p in gpt.partitions:
        lines.append(
            f"  {p.number}  {p.type_name:<12} {p.type_guid}  LBA {p.first_lba}..{p.last_lba}"
            f"  {p.name!r} {p.path or ''}".rstrip()
        )
    return lines


def _file_lines(files: list[IsoEntry], all_files: bool) -> list[str]:
    regular = sorted((f for f in files if not f.is_dir), key=lambda f: f.path)
    total = sum(f.size for f in regular)
    inside = _inside_others(regular)
    lines = [f"Files      {len(regular)} files, {_size(total)}"]
    if inside:
        lines[0] += f" ({_size(inside)} of them inside another file: stored once)"
    if all_files:
        return lines + [f"  {_size(f.size):>10}  {f.path}" for f in regular]
    top: dict[str, int] = {}
    for f in files:
        first = f.path.strip("/").split("/")[0]
        key = first + "/" if f.path.count("/") > 1 or f.is_dir else first
        top[key] = top.get(key, 0) + f.size
    lines += [f"  {_size(size):>10}  /{name}" for name, size in sorted(top.items())]
    lines.append("Largest")
    largest = sorted(regular, key=lambda f: (-f.size, f.path))[:_LARGEST]
    return lines + [f"  {_size(f.size):>10}  {f.path}" for f in largest]


def _inside_others(files: list[IsoEntry]) -> int:
    """Bytes of the files whose data lies within another file's (the ESP's kernel,
    initramfs and order slot, which the ISO's /live records point at)."""
    spans = {f.path: (f.lba, f.lba + -(-f.size // 2048)) for f in files if f.size}

    def inside(path: str) -> bool:
        start, end = spans[path]
        return any(o != path and s <= start and end <= e for o, (s, e) in spans.items())

    return sum(f.size for f in files if f.size and inside(f.path))


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"
