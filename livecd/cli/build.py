"""`livecd build`: the ISO from a profile, with progress and timings.

Every profile setting is an option, made from the profile's table of settings
(`livecd.profile.settings`); the builder itself is imported only when a build runs."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from livecd.cli import main
from livecd.cli.options import apt_sources_option, cache_option, profile_option
from livecd.profile import Profile, load_profile, settings, value_kind

F = Callable[..., Any]


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def _setting_options(command: F) -> F:
    """One option per profile setting, in the table's order; a list setting's option is
    repeatable and, when given, replaces the profile's list."""
    for f, spec in reversed(list(settings())):
        kind, is_list = value_kind(f)
        names = spec.option.split("/") if spec.option else [f"--{f.name.replace('_', '-')}"]
        click_type: Any = click.Choice(spec.choices) if spec.choices else kind
        if f.name == "output":
            click_type = click.Path(dir_okay=False, path_type=Path)
        suffix = " Repeatable; replaces the profile's list." if is_list else ""
        command = click.option(
            *names,
            f.name,
            type=click_type,
            multiple=is_list,
            metavar=spec.metavar,
            help=f"{spec.help}{suffix} [profile: {spec.where}]",
        )(command)
    return command


@main.command("build")
@profile_option("Profile (TOML) to build from. Default: the profile shipped with livecd.")
@cache_option
@apt_sources_option(
    "apt sources file(s) to take the Debian mirror from, instead of the "
    "machine's /etc/apt configuration. Repeatable."
)
@click.option(
    "--refresh",
    is_flag=True,
    help="Fetch the Debian package lists again (newer packages, security fixes).",
)
@click.option(
    "--templates",
    type=click.Path(file_okay=False, path_type=Path),
    help="Jinja templates folder (rootfs/ and iso/). Default: the repository's templates/.",
)
@click.option(
    "--overlays",
    type=click.Path(file_okay=False, path_type=Path),
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
@_setting_options
def build_command(
    profile_path: Path | None,
    cache: Path | None,
    apt_sources: tuple[Path, ...],
    refresh: bool,
    templates: Path | None,
    overlays: Path | None,
    source_date_epoch: int | None,
    lock_path: Path | None,
    **overrides: Any,
) -> None:
    """Build the live CD ISO.

    Downloads the Debian packages the profile names (with apt, from the machine's
    configured mirrors, into a private cache: no root needed, the host's apt state is not
    touched), checks the kernel has CONFIG_SECCOMP=y, assembles the root filesystem
    (busybox, driver modules, overlays/, rendered templates/) into an initramfs, and writes
    a hybrid ISO that boots from CD or USB disk under BIOS and UEFI with Secure Boot.
    A second build runs from the cache without network. Every profile setting can be
    overridden by its option.

    \b
    Examples:
      livecd build                                  the default profile
      livecd build -o /tmp/test.iso --timeout 0     no menu delay
      livecd build --profile my.toml --refresh      another profile, newest packages
      livecd build --lock libcaca-cpushare-livecd.lock.json   exactly the locked packages
    """
    from livecd.build import BuildOptions, build
    from livecd.cli.terminal import TerminalProgress
    from livecd.debian import HOST_SOURCES
    from livecd.files import cache_home
    from livecd.rootfs import OVERLAYS
    from livecd.templates import TEMPLATES

    # -o says where to write this ISO; the profile's output (its default name) stays as
    # the manifest records it, so that builds written to different places are identical.
    output: Path | None = overrides.pop("output")
    changes = {k: (v or None) if isinstance(v, tuple) else v for k, v in overrides.items()}
    profile: Profile = load_profile(profile_path).with_overrides(**changes)
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
            templates=templates or TEMPLATES,
            overlays=overlays or OVERLAYS,
            lock=lock_path,
            # Orders in a profile are relative to it; on the command line, to this folder.
            orders_base=Path.cwd() if changes["orders"] else None,
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
