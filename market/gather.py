"""Requests of the same kind that arrive together, handed to the store as one operation.

Each operation of the store's writer that reads a row waits for PostgreSQL once (market.
pgpipe): a seller's result reads its lease and job before it is judged. The results posted
by many sellers at once (they arrive together: the writer answers a whole batch of leases
at once), singly or a host's batch, are gathered over one turn of the event loop and
recorded by one operation (market.posting, with the leases asked for beside them or on
their own), which reads all their leases in one statement (agreement.record_many_checked)
and the jobs all its lease asks may take in another (market.grants). Each caller
gets its own answer, or its own refusal; an error of the operation as a whole (the
database away, the disk full) reaches every caller of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

I = TypeVar("I")  # noqa: E741  (an item handed in)
R = TypeVar("R")  # its answer

Run = Callable[[list[I]], Awaitable[list[R | Exception]]]


class Gather(Generic[I, R]):
    """`submit` hands in an item and waits for its answer, `submit_all` several; the items
    handed in during one turn of the event loop go to `run` together, which answers each
    in its place (an exception instance is raised to that item's caller by `submit`, and
    returned in its place by `submit_all`)."""

    def __init__(self, run: Run[I, R]) -> None:
        self._run = run
        self._waiting: list[tuple[list[I], asyncio.Future[list[R | Exception]]]] = []
        # The runs under way, kept from the garbage collector until they end.
        self._running: set[asyncio.Task[None]] = set()

    async def submit(self, item: I) -> R:
        (answer,) = await self.submit_all([item])
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def submit_all(self, items: list[I]) -> list[R | Exception]:
        """The answers of `items`, in order; an error of the run as a whole is raised."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[R | Exception]] = loop.create_future()
        if not self._waiting:
            loop.call_soon(self._start)
        self._waiting.append((items, future))
        return await future

    def _start(self) -> None:
        waiting, self._waiting = self._waiting, []
        task = asyncio.ensure_future(self._answer(waiting))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _answer(
        self, waiting: list[tuple[list[I], asyncio.Future[list[R | Exception]]]]
    ) -> None:
        try:
            answers = await self._run([item for items, _ in waiting for item in items])
            if len(answers) != sum(len(items) for items, _ in waiting):
                raise AssertionError("a gathered run answered a different number of items")
        except Exception as exc:  # every caller gets it: none is left waiting for ever
            for _, future in waiting:
                if not future.done():
                    future.set_exception(exc)
            return
        place = 0
        for items, future in waiting:
            if not future.done():  # else its caller is gone; the operation ran all the same
                future.set_result(answers[place : place + len(items)])
            place += len(items)
