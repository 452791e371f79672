"""The kernel command line every boot entry gets: the profile's, then the memory options."""

from __future__ import annotations

from livecd.cmdline import MEMORY_OPTIONS, kernel_cmdline


def test_the_memory_options_follow_the_profiles_options() -> None:
    line = kernel_cmdline("quiet cpushare.selftest=fail")
    assert line.split()[:2] == ["quiet", "cpushare.selftest=fail"]
    assert line.split()[2:] == list(MEMORY_OPTIONS)
    assert "initcall_blacklist=tracer_init_tracefs,init_zswap" in line.split()
    assert "cgroup.memory=nokmem" in line.split()
    assert "coherent_pool=4K" in line.split()


def test_an_option_the_profile_already_gives_is_not_repeated() -> None:
    line = kernel_cmdline(f"quiet {MEMORY_OPTIONS[0]}")
    assert line.split().count(MEMORY_OPTIONS[0]) == 1
