"""`livecd lock` and `livecd verify`: pinning a build's packages, and checking an ISO by
rebuilding it from them."""

from __future__ import annotations

from pathlib import Path

import click

from livecd.cli import main
from livecd.cli.options import apt_sources_option, cache_option, profile_option

_profile_option = profile_option("Profile (TOML). Default: the profile shipped with livecd.")
_sources_option = apt_sources_option(
    "apt sources file(s) to take the Debian mirror from. Repeatable."
)


@main.command("lock")
@_profile_option
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the lock. Default: PROFILE-NAME.lock.json, here.",
)
@cache_option
@_sources_option
@click.option(
    "--refresh",
    is_flag=True,
    help="Fetch the Debian package lists again first, to pin the newest packages.",
)
def lock_command(
    profile_path: Path | None,
    output: Path | None,
    cache: Path | None,
    apt_sources: tuple[Path, ...],
    refresh: bool,
) -> None:
    """Write a lock file pinning the packages the profile resolves to now.

    The lock names each package with its exact version, sha256 and size, the Debian
    suite, and the profile's sha256. `livecd build --lock FILE` then builds from exactly
    those packages, and `livecd verify ISO --lock FILE` rebuilds an ISO to compare.

    \b
    Examples:
      livecd lock                               pin the default profile's packages
      livecd lock --refresh -o release.lock.json    the newest packages, pinned
    """
    from livecd.debian import HOST_SOURCES, Apt, resolve
    from livecd.files import cache_home
    from livecd.lock import make_lock, write_lock
    from livecd.profile import load_profile

    profile = load_profile(profile_path)
    out = output or Path(f"{profile.name}.lock.json")
    apt = Apt(cache or cache_home(), profile.suite, apt_sources or HOST_SOURCES)
    if refresh or not apt.has_lists:
        apt.update()
    lock = make_lock(profile, resolve(apt, profile.kernel, profile.packages))
    write_lock(lock, out)
    click.echo(
        f"livecd: locked {len(lock.packages)} packages of {profile.name} "
        f"(Debian {profile.suite}) in {out}",
        err=True,
    )


@main.command("verify")
@click.argument("iso", type=click.Path(path_type=Path))
@click.option(
    "--lock",
    "lock_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The lock file the ISO was built from.",
)
@_profile_option
@cache_option
@_sources_option
def verify_command(
    iso: Path,
    lock_path: Path,
    profile_path: Path | None,
    cache: Path | None,
    apt_sources: tuple[Path, ...],
) -> None:
    """Rebuild ISO from the lock and check the two are the same, byte for byte.

    The rebuild takes the packages from the lock, and the profile settings and
    SOURCE_DATE_EPOCH from the manifest inside ISO; it is written to a temporary
    directory. When the sha256 differ, prints what inside differs (layout fields, files,
    initramfs members, ESP files) and exits 1; `diffoscope` shows the bytes.

    \b
    Example:
      livecd verify libcaca-cpushare-livecd.iso --lock libcaca-cpushare-livecd.lock.json
    """
    from livecd.cli.terminal import TerminalProgress
    from livecd.debian import HOST_SOURCES
    from livecd.verify import verify_iso

    click.echo(f"livecd: rebuilding {iso} from {lock_path}", err=True)
    result = verify_iso(
        iso,
        lock_path,
        profile_path=profile_path,
        cache=cache,
        apt_sources=apt_sources or HOST_SOURCES,
        progress=TerminalProgress(),
    )
    if result.ok:
        click.echo(f"livecd: {iso} is reproducible: sha256 {result.sha256}")
        return
    for line in result.differences:
        click.echo(f"differs: {line}")
    click.echo(
        f"livecd: error: {iso} (sha256 {result.sha256}) is not what {lock_path} rebuilds "
        f"(sha256 {result.rebuilt_sha256})",
        err=True,
    )
    raise SystemExit(1)
