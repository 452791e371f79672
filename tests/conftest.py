"""Fixtures shared across test packages: the jail's environment, one real build of the
default profile, and a real market on loopback with a real job for the market and seller tests."""

from __future__ import annotations

import asyncio
import functools
import os
import shutil
import uuid
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from hypothesis import settings

from livecd import toolchain
from livecd.build import BuildOptions, BuildResult, build
from livecd.market_process import MarketProcess
from livecd.profile import load_profile
from livecd.toolchain import FSDITHER_SOURCE, build_job
from market.buyer import BuyerClient
from market.dialect import Location
from market.store import open_database

EPOCH = 1_700_000_000

# Property tests check what holds, not how fast: no per-example deadline, which a loaded
# machine (QEMU boots beside the suite) overruns and reports as a flaky failure.
settings.register_profile("livecd", deadline=None)
settings.load_profile("livecd")


@pytest.fixture(scope="session", autouse=True)
def jail_on_this_host() -> None:
    """Point the guest's jail (and every seller a test starts) at the toolchain's builds
    of the loader and self-test job, as the image has them at fixed paths."""
    for name, value in toolchain.jail_environment().items():
        os.environ.setdefault(name, value)


RunCoroutine = Callable[[Coroutine[Any, Any, Any]], Any]


@pytest.fixture
def run_coroutine() -> RunCoroutine:
    """Runs a coroutine to its end on an event loop of its own, in a thread: once the
    session's browser has started, Playwright's loop runs in the main thread, where
    `asyncio.run` refuses to start another."""

    def run(coroutine: Coroutine[Any, Any, Any]) -> Any:
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, coroutine).result()

    return run


@pytest.fixture(scope="session")
def default_build(tmp_path_factory: pytest.TempPathFactory) -> BuildResult:
    """The default profile, built once (no menu delay, fixed SOURCE_DATE_EPOCH). The first
    run downloads the Debian packages into the user's cache; later runs use the cache."""
    out = tmp_path_factory.mktemp("iso") / "live.iso"
    profile = load_profile().with_overrides(timeout=0)
    return build(BuildOptions(profile=profile, output=out, source_date_epoch=EPOCH))


@pytest.fixture(scope="session")
def iso(default_build: BuildResult) -> Path:
    return default_build.iso


BuildJob = Callable[[Path], bytes]


@pytest.fixture(scope="session")
def build_test_job(tmp_path_factory: pytest.TempPathFactory) -> BuildJob:
    """Builds a job from one C source with the SDK, once a source in a session."""
    out = tmp_path_factory.mktemp("jobs")

    @functools.cache
    def build(source: Path) -> bytes:
        return build_job([source], out / f"{source.stem}.job").read_bytes()

    return build


@pytest.fixture(scope="session")
def fsdither(build_test_job: BuildJob) -> bytes:
    """The Floyd-Steinberg reference job, built with the SDK."""
    return build_test_job(FSDITHER_SOURCE)


@pytest.fixture(scope="session")
def spin(build_test_job: BuildJob) -> bytes:
    """A job that burns CPU for as many million rounds as its input says (about 0.65 s
    per thousand on the host), then answers `spun`."""
    return build_test_job(Path(__file__).resolve().parent / "seller" / "spin.c")


# A superuser connection to the PostgreSQL cluster `make test` starts (Debian's, over its
# Unix socket), where each test that asks gets a database of its own.
POSTGRES = os.environ.get(
    "CPUSHARE_TEST_POSTGRES", "postgresql:///postgres?host=/var/run/postgresql"
)


def _database_url(name: str) -> str:
    # Built by hand: urlunsplit() drops the empty host of a Unix-socket URL.
    url = urlsplit(POSTGRES)
    return f"{url.scheme}://{url.netloc}/{name}" + (f"?{url.query}" if url.query else "")


def _drop_abandoned(admin: psycopg.Connection[tuple[object, ...]]) -> None:
    """Drop the databases of test runs killed before their clean-up: named after a
    process that no longer runs."""
    rows = admin.execute(
        r"SELECT datname FROM pg_database WHERE datname ~ '^cpushare_(template|test)_\d+'"
    ).fetchall()
    for (name,) in rows:
        try:
            os.kill(int(str(name).split("_")[2]), 0)
        except ProcessLookupError:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        except PermissionError:
            pass  # another user's process: running


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    """A migrated, empty market database that test databases are copied from (a copy is
    much faster than running the migrations again)."""
    name = f"cpushare_template_{os.getpid()}"
    with psycopg.connect(POSTGRES, autocommit=True) as admin:
        _drop_abandoned(admin)
        admin.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.execute(f"CREATE DATABASE {name}")
        try:
            open_database(_database_url(name)).close()
            yield name
        finally:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def market_backend() -> str:
    """The engine behind the market fixtures; the market's own tests run on both."""
    return "sqlite"


@pytest.fixture
def market_location(
    request: pytest.FixtureRequest, market_backend: str, tmp_path: Path
) -> Iterator[Location]:
    """Where a test's market keeps its data: a SQLite file, or a fresh PostgreSQL database
    dropped (whoever is still connected) when the test ends."""
    if market_backend == "sqlite":
        yield tmp_path / "market.db"
        return
    template = request.getfixturevalue("postgres_template")
    name = f"cpushare_test_{os.getpid()}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
        try:
            yield _database_url(name)
        finally:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def market(tmp_path: Path, market_location: Location) -> Iterator[MarketProcess]:
    """A running market with 2-second leases."""
    process = MarketProcess(tmp_path, db=market_location, lease_seconds=2).start()
    yield process
    process.stop(kill=True)


@pytest.fixture
def buyer(market: MarketProcess) -> BuyerClient:
    """A client for a fresh account `lab`, granted coins to buy with."""
    return BuyerClient(market.url, market.account("lab", coins=1_000_000).api_key)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    """Playwright drives Debian's chromium (its own browser download is not needed)."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("no chromium: scripts/install-host-packages.sh installs Debian's")
    # --no-sandbox: chromium's sandbox needs user namespaces the test machine may lack.
    return {**browser_type_launch_args, "executable_path": chromium, "args": ["--no-sandbox"]}
