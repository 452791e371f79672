"""Results posted, and the leases asked for beside them, recorded by one operation.

A seller in batch mode posts its seats' results and asks for their next leases (`next`)
in one request. Recorded by two operations of the store, the results (gathered with those
other sellers post meanwhile: market.gather) and then the leases, that request waited for
two commits, one after the other, each in a batch of its own. Here the leases asked for
are items of the same gathered operation as the results: taken after all its results, in
the same transaction, as they were after the results' commit, so one commit answers the
request. A seat whose result was not kept (refused before or while recording) keeps its
lease: leasing on it would hand that lease back, and the result's next post would find
it gone.

A lease request on its own (POST /v1/lease, /v1/leases, each try of a long poll) is a
NextLeases without results, an item of the same gathered operation: the asks arriving
together are granted together (market.grants), on PostgreSQL by a few statements for all
of them.
"""

from __future__ import annotations

from typing import NamedTuple

from market import agreement, grants, leasing
from market.agreement import Recorded, ResultIn
from market.dialect import Connection
from market.errors import MarketError
from market.hosts import Host
from market.later import Later
from market.leasing import Fit, Lease


class NextLeases(NamedTuple):
    """The leases a request asks for beside its results (their seats checked already)."""

    host: Host
    seats: list[int]
    limits: Fit
    # The leases whose results the request posts (items of the same operation), and those
    # whose results it refused before recording (malformed).
    posted: list[int]
    refused: list[int]


# What the gathered operation is handed: a result (host, lease, result), or leases asked for.
Item = tuple[str, int, ResultIn] | NextLeases
Answer = Recorded | list[Lease]


def record_and_lease(
    conn: Connection, items: list[Item], now: float, lease_seconds: float
) -> Later[list[Answer | MarketError]]:
    """The results among `items` recorded (agreement.record_many_checked), then the
    NextLeases granted all together (grants.grant_many), in their order; the answers in
    the items' order: a result's Recorded or refusal, the leases granted."""
    results = [item for item in items if not isinstance(item, NextLeases)]
    recorded: Later[list[Recorded | MarketError]] = Later(list)
    refusals: list[MarketError | None] = []
    if results:
        recorded, refusals = agreement.record_many_checked(conn, results, now)
    refused = {
        (host_id, lease_id)
        for (host_id, lease_id, _), refusal in zip(results, refusals, strict=True)
        if refusal is not None
    }
    # An ask refused on its own (a seat its host does not have) is answered so; the rest
    # of the operation stands.
    asks = [_ask(conn, item, refused) for item in items if isinstance(item, NextLeases)]
    wanted = [ask for ask in asks if isinstance(ask, grants.Ask) and ask.seats]
    leased = iter(grants.grant_many(conn, wanted, lease_seconds, now))
    nothing: Later[list[Lease]] = Later(list)
    granted = [
        ask if isinstance(ask, MarketError) else next(leased) if ask.seats else nothing
        for ask in asks
    ]

    def answers() -> list[Answer | MarketError]:
        recorded_now = iter(recorded.value())
        granted_now = iter(granted)
        return [
            _value(next(granted_now)) if isinstance(item, NextLeases) else next(recorded_now)
            for item in items
        ]

    return Later(answers)


def _value(granted: Later[list[Lease]] | MarketError) -> list[Lease] | MarketError:
    return granted if isinstance(granted, MarketError) else granted.value()


def _ask(
    conn: Connection, ask: NextLeases, refused: set[tuple[str, int]]
) -> grants.Ask | MarketError:
    """The leases of `ask`, but on the seats still holding a lease whose result was not
    kept; its refusal if it names a seat its host does not have."""
    host = ask.host
    try:
        leasing.check_seats(host, ask.seats)
    except MarketError as exc:
        return exc
    unacknowledged = ask.refused + [lease for lease in ask.posted if (host.id, lease) in refused]
    seats = ask.seats
    if unacknowledged:
        held = leasing.active_seats(conn, host.id, unacknowledged)
        seats = [seat for seat in seats if seat not in held]
    return grants.Ask(host, seats, ask.limits)
