"""The coins add up, whatever happens: a stateful property test drives random grants,
submits, enrollments, leases, honest and garbage results, expiries, releases, cancels and
revocations against a real SQLite market database, and checks the books after every step."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TypeVar

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from cpushare.limits import JobLimits
from market import accounts, agreement, hosts, jobs, leasing, ledger
from market.errors import MarketError
from market.schema import migrate
from tests.market.helpers import LIMITS, PROGRAM, SHA, result

T = TypeVar("T")
BUYERS = ("lab", "alice")
NETWORKS = ("10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4")


class Market(RuleBasedStateMachine):
    @initialize()
    def open(self) -> None:
        self.conn = sqlite3.connect(":memory:", isolation_level=None)
        self.conn.execute("PRAGMA foreign_keys = ON")
        migrate(self.conn)
        for name in (*BUYERS, "seller"):
            accounts.create_account(self.conn, name)
        jobs.store_program(self.conn, 1, PROGRAM, SHA)
        self.hosts: list[hosts.Host] = []
        self.now = 0.0
        self.granted = 0

    def _step(self, op: Callable[[sqlite3.Connection], T]) -> T | None:
        """One operation as the market's writer runs it: all of it, or none of it."""
        self.conn.execute("SAVEPOINT op")
        try:
            value = op(self.conn)
        except MarketError:
            self.conn.execute("ROLLBACK TO op")
            self.conn.execute("RELEASE op")
            return None
        self.conn.execute("RELEASE op")
        return value

    def _active(self) -> list[tuple[int, str]]:
        return self.conn.execute(
            "SELECT id, host_id FROM leases WHERE state = 'active' ORDER BY id"
        ).fetchall()

    @rule(buyer=st.sampled_from(BUYERS), coins=st.integers(1, 10**6))
    def grant(self, buyer: str, coins: int) -> None:
        self._step(lambda c: ledger.grant(c, accounts.account_id(c, buyer), coins, self.now))
        self.granted += coins

    @rule(
        buyer=st.sampled_from(BUYERS),
        count=st.integers(1, 4),
        replicas=st.sampled_from([None, 1, 2, 3]),
        cpu=st.integers(1, 60),
    )
    def submit(self, buyer: str, count: int, replicas: int | None, cpu: int) -> None:
        limits = JobLimits(cpu_seconds=cpu, wall_seconds=300.0)
        inputs = [bytes([i]) for i in range(count)]
        self._step(
            lambda c: jobs.submit_jobs(
                c, accounts.account_id(c, buyer), SHA, inputs, limits, replicas
            )
        )

    @rule(network=st.sampled_from(NETWORKS), seats=st.integers(1, 3))
    def enroll(self, network: str, seats: int) -> None:
        order = accounts.create_order(self.conn, "seller").order_id
        enrolled = hosts.enroll(self.conn, order, seats, network)
        found = hosts.authenticate(self.conn, enrolled.host_id, enrolled.secret)
        assert found is not None
        self.hosts.append(found)

    @rule(pick=st.integers(0, 100), seat=st.integers(0, 2), lucky=st.floats(0, 1))
    def lease(self, pick: int, seat: int, lucky: float) -> None:
        if self.hosts:
            host = self.hosts[pick % len(self.hosts)]
            self._step(
                lambda c: leasing.grant_lease(
                    c, host, seat % host.seats, LIMITS, 60, self.now, lambda: lucky
                )
            )

    @rule(pick=st.integers(0, 100), honest=st.booleans(), cpu=st.floats(0, 1e12))
    def post(self, pick: int, honest: bool, cpu: float) -> None:
        active = self._active()
        if active:
            lease_id, host_id = active[pick % len(active)]
            output = b"right" if honest else b"garbage %d" % pick
            self._step(
                lambda c: agreement.record_result(
                    c, lease_id, host_id, result(output, cpu), self.now
                )
            )

    @rule(pick=st.integers(0, 100))
    def release(self, pick: int) -> None:
        active = self._active()
        if active:
            lease_id, host_id = active[pick % len(active)]
            self._step(lambda c: leasing.release_lease(c, lease_id, host_id, self.now))

    @rule(seconds=st.floats(1, 120))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds
        self._step(lambda c: leasing.expire_leases(c, self.now))

    @rule(pick=st.integers(0, 100))
    def cancel(self, pick: int) -> None:
        rows = self.conn.execute("SELECT id, account_id FROM jobs ORDER BY id").fetchall()
        if rows:
            job_id, owner = rows[pick % len(rows)]
            self._step(lambda c: agreement.cancel(c, owner, job_id, self.now))

    @rule(pick=st.integers(0, 100))
    def revoke(self, pick: int) -> None:
        if self.hosts:
            host = self.hosts.pop(pick % len(self.hosts))
            self._step(lambda c: hosts.revoke_host(c, host.id))

    @invariant()
    def books_add_up(self) -> None:
        if hasattr(self, "conn"):
            assert ledger.check(self.conn) == []
            held = self.conn.execute(
                "SELECT (SELECT sum(millicoins) FROM accounts) "
                "+ (SELECT coalesce(sum(reserved), 0) FROM jobs)"
            ).fetchone()[0]
            assert (held or 0) == self.granted

    def teardown(self) -> None:
        if hasattr(self, "conn"):
            self.conn.close()


Market.TestCase.settings = settings(max_examples=60, stateful_step_count=60, deadline=None)
TestCoinsAddUp = Market.TestCase
