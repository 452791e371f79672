"""Checking an ISO against a rebuild from a lock: the same sha256, or what inside differs.

The rebuild takes the profile settings and SOURCE_DATE_EPOCH from the ISO's own manifest
and the packages from the lock. When the two ISOs differ, the comparison goes down into
them: the volume and boot layout, every file, the members of the initramfs (read by
bsdtar) and of the ESP's FAT image (read by mtools).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tarfile
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pycdlib

from diskformats.isoread import IsoReport, inspect_iso
from livecd.boottree import EFI_IMAGE
from livecd.build import BuildOptions, build
from livecd.debian import HOST_SOURCES
from livecd.errors import UserError
from livecd.files import cache_home, sha256_file
from livecd.profile import Profile, load_profile
from livecd.progress import Progress
from livecd.run import need, run, streamed
from livecd.stage1 import IMAGE, split

INITRAMFS = "live/initrd.img"
# What `inspect` reports besides the files: everything in the ISO that is not a file.
_MEMBERS_LISTED = 5
_LAYOUT_FIELDS = ("volume", "boot_catalog", "boot_entries", "mbr_disk_id", "mbr_partitions", "gpt")


@dataclass(frozen=True)
class Verification:
    iso: Path
    sha256: str
    rebuilt_sha256: str
    differences: list[str]

    @property
    def ok(self) -> bool:
        return self.sha256 == self.rebuilt_sha256


def verify_iso(
    iso: Path,
    lock: Path,
    *,
    profile_path: Path | None = None,
    cache: Path | None = None,
    apt_sources: Sequence[Path] = HOST_SOURCES,
    progress: Progress | None = None,
) -> Verification:
    """Rebuild `iso` from `lock` (and the settings its manifest records) in a temporary
    directory and compare the two."""
    manifest = inspect_iso(iso).manifest
    epoch = _recorded_epoch(iso, manifest)
    profile = built_profile(load_profile(profile_path), manifest, iso)
    with tempfile.TemporaryDirectory(prefix="livecd-verify-") as tmp:
        rebuilt = build(
            BuildOptions(
                profile=profile,
                output=Path(tmp) / iso.name,
                cache=cache or cache_home(),
                apt_sources=apt_sources,
                source_date_epoch=epoch,
                lock=lock,
            ),
            progress,
        )
        digest = sha256_file(iso)
        same = digest == rebuilt.sha256
        return Verification(
            iso=iso,
            sha256=digest,
            rebuilt_sha256=rebuilt.sha256,
            differences=[] if same else iso_differences(iso, rebuilt.iso),
        )


def _recorded_epoch(iso: Path, manifest: Any) -> int:
    epoch = manifest.get("source_date_epoch") if isinstance(manifest, dict) else None
    if not isinstance(epoch, int):
        raise UserError(
            f"{iso}: no manifest.json with a source_date_epoch inside: "
            "only an ISO made by `livecd build` can be verified"
        )
    return epoch


def built_profile(profile: Profile, manifest: Any, iso: Path) -> Profile:
    """`profile` with the settings the manifest of `iso` records (command-line overrides
    included), so that the rebuild is made as the ISO was."""
    recorded = manifest.get("profile", {}).get("settings")
    if not isinstance(recorded, dict) or set(recorded) != set(profile.settings()):
        raise UserError(
            f"{iso}: its manifest records no profile settings this livecd knows: it was made "
            "by another version of livecd; verify it with that version"
        )
    try:
        return profile.with_overrides(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in recorded.items()}
        )
    except TypeError as exc:
        raise UserError(f"{iso}: its manifest's profile settings are not usable: {exc}") from None


def iso_differences(a: Path, b: Path) -> list[str]:
    """What differs between ISOs `a` and `b`, one line each, from the layout down to the
    members of the initramfs and of the ESP image."""
    lines = _layout_differences(inspect_iso(a), inspect_iso(b))
    with tempfile.TemporaryDirectory(prefix="livecd-diff-") as tmp:
        files_a = _iso_files(a, Path(tmp) / "a")
        files_b = _iso_files(b, Path(tmp) / "b")
        digests_a = {path: sha256_file(f) for path, f in files_a.items()}
        digests_b = {path: sha256_file(f) for path, f in files_b.items()}
        lines += _only_in_one(digests_a, digests_b, "")
        changed = sorted(
            p for p in digests_a.keys() & digests_b.keys() if digests_a[p] != digests_b[p]
        )
        for path in changed:
            lines += _inside_differences(path, files_a[path], files_b[path])
    return lines or ["same layout and files: run `diffoscope A B` to see the bytes that differ"]


def _layout_differences(a: IsoReport, b: IsoReport) -> list[str]:
    fields_a = dict(_flatten({k: dataclasses.asdict(a)[k] for k in _LAYOUT_FIELDS}))
    fields_b = dict(_flatten({k: dataclasses.asdict(b)[k] for k in _LAYOUT_FIELDS}))
    lines = [
        f"{key}: {fields_a.get(key)!r} != {fields_b.get(key)!r}"
        for key in sorted(fields_a.keys() | fields_b.keys())
        if fields_a.get(key) != fields_b.get(key)
    ]
    if a.file_size != b.file_size:
        lines.insert(0, f"size: {a.file_size} != {b.file_size} bytes")
    return lines


def _flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _flatten(item, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _flatten(item, f"{prefix}[{i}]")
    else:
        yield prefix, value


def _iso_files(iso: Path, dest: Path) -> dict[str, Path]:
    """Every file of `iso` (by its Rock Ridge path) extracted under `dest`."""
    reader = pycdlib.PyCdlib()
    reader.open(str(iso))
    files = {}
    try:
        for directory, _, names in reader.walk(rr_path="/"):
            for name in names:
                rr_path = f"{directory.rstrip('/')}/{name}"
                path = rr_path.lstrip("/")
                out = dest / path
                out.parent.mkdir(parents=True, exist_ok=True)
                reader.get_file_from_iso(str(out), rr_path=rr_path)
                files[path] = out
    finally:
        reader.close()
    return files


def _only_in_one(a: Mapping[str, object], b: Mapping[str, object], prefix: str) -> list[str]:
    lines = [f"{prefix}{key}: only in the first" for key in sorted(a.keys() - b.keys())]
    return lines + [f"{prefix}{key}: only in the second" for key in sorted(b.keys() - a.keys())]


def _inside_differences(path: str, a: Path, b: Path) -> list[str]:
    if path == INITRAMFS:
        inside = _member_differences(_initramfs_members(a), _initramfs_members(b))
    elif path == EFI_IMAGE:
        inside = _member_differences(_fat_members(a), _fat_members(b))
        inside = inside or ["same files, other FAT metadata (volume serial, label or layout)"]
    elif path.endswith(".json"):
        inside = _json_differences(_json_object(a), _json_object(b))
    else:
        return [f"{path}: content differs"]
    return [f"{path}: {line}" for line in inside or ["content differs"]]


def _json_differences(a: Mapping[str, object], b: Mapping[str, object]) -> list[str]:
    lines = _only_in_one(a, b, "")
    for key in sorted(a.keys() & b.keys()):
        if a[key] != b[key]:
            scalars = not isinstance(a[key], dict | list) and not isinstance(b[key], dict | list)
            lines.append(f"{key}: {a[key]!r} != {b[key]!r}" if scalars else f"{key} differs")
    return lines


def _json_object(path: Path) -> dict[str, object]:
    try:
        data = json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _member_differences(
    a: Mapping[str, dict[str, object]], b: Mapping[str, dict[str, object]]
) -> list[str]:
    lines = _only_in_one(a, b, "")
    by_fields: dict[str, list[str]] = {}
    for name in sorted(a.keys() & b.keys()):
        fields = [k for k in a[name] if a[name][k] != b[name].get(k)]
        if fields:
            verb = "differs" if len(fields) == 1 else "differ"
            by_fields.setdefault(f"{', '.join(fields)} {verb}", []).append(name)
    for what, names in by_fields.items():
        # An epoch or a mode applied to everything would otherwise list every member.
        if len(names) > _MEMBERS_LISTED:
            shown = ", ".join(names[:_MEMBERS_LISTED])
            lines.append(f"{what} in {len(names)} members ({shown}, ...)")
        else:
            lines += [f"{name}: {what}" for name in names]
    return lines


def _initramfs_members(path: Path) -> dict[str, dict[str, object]]:
    """The members of the first stage's archive and, named below the image's path, the
    files of the squashfs image that follows it (`livecd.stage1`)."""
    data = path.read_bytes()
    try:
        first, archive = split(data)
    except ValueError:
        return _cpio_members(path)
    with tempfile.TemporaryDirectory(prefix="livecd-verify-") as tmp:
        root = Path(tmp)
        (root / "first.cpio").write_bytes(first)
        members = _cpio_members(root / "first.cpio")
        run(["bsdtar", "-xf", "-", "-C", tmp], input=archive, what="bsdtar")
        unsquashfs = need("unsquashfs", "squashfs-tools")
        run([unsquashfs, "-q", "-n", "-d", root / "image", root / IMAGE], what="unsquashfs")
        members.update(_tree_members(root / "image", IMAGE))
    return members


def _tree_members(root: Path, prefix: str) -> dict[str, dict[str, object]]:
    """Files of an unpacked image, described as `_cpio_members` describes archive members."""
    members: dict[str, dict[str, object]] = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        kind = tarfile.SYMTYPE if path.is_symlink() else tarfile.DIRTYPE if path.is_dir() else (
            tarfile.REGTYPE
        )  # fmt: skip
        members[f"{prefix}/{path.relative_to(root).as_posix()}"] = {
            "type": kind,
            "mode": oct(st.st_mode & 0o7777),
            "owner": (st.st_uid, st.st_gid),
            "mtime": int(st.st_mtime),
            "link": os.readlink(path) if kind == tarfile.SYMTYPE else "",
            "device": (0, 0),
            "content": sha256_file(path) if kind == tarfile.REGTYPE else "",
        }
    return members


def _cpio_members(path: Path) -> dict[str, dict[str, object]]:
    """The members of a (compressed) cpio, read by bsdtar, which reads every format and
    compression the kernel does and writes them as one tar stream."""
    need("bsdtar", "libarchive-tools")
    members: dict[str, dict[str, object]] = {}
    try:
        with (
            streamed(["bsdtar", "-cf", "-", "--format=pax", f"@{path}"]) as stream,
            tarfile.open(fileobj=stream, mode="r|") as archive,
        ):
            for member in archive:
                data = archive.extractfile(member) if member.isreg() else None
                members[member.name] = {
                    "type": member.type,
                    "mode": oct(member.mode),
                    "owner": (member.uid, member.gid),
                    "mtime": int(member.mtime),
                    "link": member.linkname,
                    "device": (member.devmajor, member.devminor),
                    "content": hashlib.sha256(data.read()).hexdigest() if data else "",
                }
    except tarfile.TarError:
        members = {"(not a readable archive)": {"content": sha256_file(path)}}
    return members


def _fat_members(path: Path) -> dict[str, dict[str, object]]:
    """The files of a FAT image, read by mtools."""
    need("mcopy", "mtools")
    with tempfile.TemporaryDirectory(prefix="livecd-fat-") as tmp:
        proc = run(
            ["mcopy", "-s", "-m", "-i", path, "::/", tmp],
            env={**os.environ, "MTOOLS_SKIP_CHECK": "1", "TZ": "UTC"},
            check=False,
        )
        if proc.returncode != 0:
            return {"(not a readable FAT image)": {"content": sha256_file(path)}}
        return {
            f.relative_to(tmp).as_posix(): {
                "mtime": int(f.stat().st_mtime),
                "content": sha256_file(f),
            }
            for f in sorted(Path(tmp).rglob("*"))
            if f.is_file()
        }
