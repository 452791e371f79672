"""`livecd build`: the ISO from a profile, with progress and timings."""

from __future__ import annotations

import time
from pathlib import Path

import click

from livecd.build import BuildOptions, build
from livecd.cli import main
from livecd.cli.terminal import TerminalProgress
from livecd.debian import HOST_SOURCES
from livecd.files import cache_home
from livecd.profile import COMPRESSIONS, load_profile
from livecd.rootfs import OVERLAYS
from livecd.templates import TEMPLATES


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


@main.command("build")
@click.option(
    "-p",
    "--profile",
    "profile_path",
    type=click.Path(path_type=Path),
    help="Profile (TOML) to build from. Default: the profile shipped with livecd.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    help="Where to write the ISO. Default: the profile's output name, here.",
)
@click.option(
    "--cache",
    type=click.Path(path_type=Path),
    default=None,
    help="Cache of packages and apt state. Default: $XDG_CACHE_HOME/livecd.",
)
@click.option(
    "--apt-sources",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="apt sources file(s) to take the Debian mirror from, instead of the "
    "machine's /etc/apt configuration. Repeatable.",
)
@click.option(
    "--refresh",
    is_flag=True,
    help="Fetch the Debian package lists again (newer packages, security fixes).",
)
@click.option(
    "--compression",
    type=click.Choice(COMPRESSIONS),
    help="Initramfs compression (overrides the profile).",
)
@click.option("--timeout", type=int, help="Boot menu timeout in seconds (overrides the profile).")
@click.option("--cmdline", help="Kernel command line of every boot entry (overrides the profile).")
@click.option(
    "--order",
    "orders",
    multiple=True,
    metavar="FILE|URL",
    help="A .cpu sell order to build into the CD (/etc/cpushare); repeatable. Replaces the "
    "profile's orders.",
)
@click.option(
    "--templates",
    type=click.Path(file_okay=False, path_type=Path),
    default=TEMPLATES,
    help="Jinja templates folder (rootfs/ and iso/). Default: the repository's templates/.",
)
@click.option(
    "--overlays",
    type=click.Path(file_okay=False, path_type=Path),
    default=OVERLAYS,
    help="Files copied verbatim into the root filesystem. Default: the repository's overlays/.",
)
@click.option(
    "--source-date-epoch",
    type=int,
    help="Timestamp for everything in the image. Default: $SOURCE_DATE_EPOCH, "
    "else the last commit's time.",
)
@click.option(
    "--lock",
    "lock_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Build from exactly the packages of this lock file (see `livecd lock`).",
)
def build_command(
    profile_path: Path | None,
    output: Path | None,
    cache: Path | None,
    apt_sources: tuple[Path, ...],
    refresh: bool,
    compression: str | None,
    timeout: int | None,
    cmdline: str | None,
    orders: tuple[str, ...],
    templates: Path,
    overlays: Path,
    source_date_epoch: int | None,
    lock_path: Path | None,
) -> None:
    """Build the live CD ISO.

    Downloads the Debian packages the profile names (with apt, from the machine's
    configured mirrors, into a private cache: no root needed, the host's apt state is not
    touched), checks the kernel has CONFIG_SECCOMP=y, assembles the root filesystem
    (busybox, driver modules, overlays/, rendered templates/) into an initramfs, and writes
    a hybrid ISO that boots from CD or USB disk under BIOS and UEFI with Secure Boot.
    A second build runs from the cache without network.

    \b
    Examples:
      livecd build                                  the default profile
      livecd build -o /tmp/test.iso --timeout 0     no menu delay
      livecd build --profile my.toml --refresh      another profile, newest packages
      livecd build --lock libcaca-cpushare-livecd.lock.json   exactly the locked packages
    """
    profile = load_profile(profile_path).with_overrides(
        compression=compression, timeout=timeout, cmdline=cmdline
    )
    out = output or Path(profile.output)
    start = time.monotonic()
    click.echo(f"livecd: building {out} from profile {profile.name}", err=True)
    result = build(
        BuildOptions(
            profile=profile,
            output=out,
            cache=cache or cache_home(),
            apt_sources=apt_sources or HOST_SOURCES,
            refresh=refresh,
            source_date_epoch=source_date_epoch,
            templates=templates,
            overlays=overlays,
            orders=orders,
            lock=lock_path,
        ),
        TerminalProgress(),
    )
    click.echo(
        f"livecd: wrote {result.iso} ({_mib(result.size)}, initramfs "
        f"{_mib(result.initramfs_size)} from {_mib(result.rootfs_size)}, kernel "
        f"{result.kernel_release}) in {time.monotonic() - start:.1f} s\n"
        f"livecd: sha256 {result.sha256}",
        err=True,
    )
