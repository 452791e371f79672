"""The `cpushare` Debian package: the live CD's seller for machines that run Debian.

`contents` says what goes in (the guest package, the jail's loader and self-test job,
the init script, the unit), `archive` writes it as a `.deb`, byte for byte reproducible.
"""
