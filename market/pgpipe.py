"""The writer's statements in libpq's pipeline mode, sent in bulk.

psycopg's own pipeline sends each statement as it is queued, one system call each, and
the server wakes up for each: measured on the market's hot paths (nine statements a lease
and its result), that machinery cost more CPU than the market's own work, on both sides
of the socket. Here a statement is a prepared statement's Bind and Execute appended to
libpq's output buffer (psycopg's `pq` layer, its C adapters for the values and rows);
the buffer goes out, in as few writes as it takes, only when a result is wanted, so the
server answers a whole run of statements at once.

Results come back in the order the statements were sent and are read in that order. After
a statement fails the server skips the rest until the next sync: the first error is
raised by whichever read (or sync) comes next, as psycopg's pipeline does.
"""

from __future__ import annotations

import collections
import functools
import itertools
import select
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import errors, pq
from psycopg.adapt import PyFormat, Transformer

_TUPLES_OK = pq.ExecStatus.TUPLES_OK
_FATAL_ERROR = pq.ExecStatus.FATAL_ERROR
_PIPELINE_SYNC = pq.ExecStatus.PIPELINE_SYNC
_TEXT = pq.Format.TEXT
# Parameters larger than this in one statement are sent out at once (reading whatever the
# server answers meanwhile), so that a batch of large outputs is not held twice in memory.
SEND_AT_ONCE_BYTES = 1 << 16
# Prepared statements kept per connection; past it statements run unnamed.
MAX_PREPARED = 1024
# Names of prepared statements: unique in the process, so on each of its connections.
_names = itertools.count()


@functools.lru_cache(maxsize=1024)
def numbered(sql: str) -> bytes:
    """The market's `?` placeholders as PostgreSQL's `$1`, `$2`, ..."""
    parts = sql.split("?")
    text = parts[0] + "".join(f"${n}{part}" for n, part in enumerate(parts[1:], 1))
    return text.encode()


@functools.lru_cache(maxsize=64)
def _formats(count: int) -> list[PyFormat]:
    return [PyFormat.AUTO] * count


class Statement:
    """A statement sent in a pipeline; reading its result waits for it (and for every
    statement sent before it)."""

    __slots__ = ("_pipe", "_prepared", "_result", "_rows", "done")

    def __init__(self, pipe: Pipeline, prepared: tuple[bytes, tuple[int, ...]] | None) -> None:
        self._pipe = pipe
        # The key of the prepared statement this command creates (None: an execution).
        self._prepared = prepared
        self._result: pq.abc.PGresult | None = None
        self._rows: collections.deque[Any] | None = None
        self.done = False

    def _take(self, result: pq.abc.PGresult) -> None:
        if self._result is None:
            self._result = result

    def _result_now(self) -> pq.abc.PGresult:
        self._pipe.receive(self)
        result = self._result
        assert result is not None
        if result.status == _FATAL_ERROR or result.status == pq.ExecStatus.PIPELINE_ABORTED:
            self._pipe.raise_first_error()
            raise errors.PipelineAborted("pipeline aborted")
        return result

    @property
    def rowcount(self) -> int:
        result = self._result_now()
        if result.status == _TUPLES_OK:
            return result.ntuples
        tuples = result.command_tuples
        return -1 if tuples is None else tuples

    def _load(self) -> collections.deque[Any]:
        if self._rows is None:
            result = self._result_now()
            rows: list[Any] = []
            if result.status == _TUPLES_OK and result.ntuples:
                loader = self._pipe.loader
                loader.set_pgresult(result)
                rows = loader.load_rows(0, result.ntuples, tuple)
            self._rows = collections.deque(rows)
        return self._rows

    def fetchone(self) -> Any:
        rows = self._load()
        return rows.popleft() if rows else None

    def fetchall(self) -> list[Any]:
        rows = self._load()
        taken = list(rows)
        rows.clear()
        return taken

    def __iter__(self) -> Any:
        return iter(self.fetchall())


class Statements:
    """The statements of one executemany(): their row counts added, their rows joined."""

    def __init__(self, statements: list[Statement]) -> None:
        self._statements = statements

    @property
    def rowcount(self) -> int:
        return sum(statement.rowcount for statement in self._statements)

    def fetchone(self) -> Any:
        for statement in self._statements:
            row = statement.fetchone()
            if row is not None:
                return row
        return None

    def fetchall(self) -> list[Any]:
        return [row for statement in self._statements for row in statement.fetchall()]

    def __iter__(self) -> Any:
        return iter(self.fetchall())


class Pipeline:
    """One pipeline on a psycopg connection (which must not be used otherwise meanwhile):
    `execute` queues, a Statement's read or `sync` waits, `close` leaves pipeline mode.

    `prepared` maps (SQL, parameter types) to the names of the statements prepared on this
    connection; it outlives the pipeline, as the prepared statements do."""

    def __init__(
        self,
        raw: psycopg.Connection[Any],
        prepared: dict[tuple[bytes, tuple[int, ...]], bytes],
        lost: Callable[[psycopg.OperationalError], None],
    ) -> None:
        self._pgconn = raw.pgconn
        # Called with an error about the connection before it is raised (it may raise another).
        self._lost = lost
        self._encoding = raw.info.encoding
        self._prepared = prepared
        self._dumper = Transformer(raw)
        self.loader = Transformer(raw)
        # Every command sent whose results are not all read yet, in order; None for a sync.
        self._waiting: collections.deque[Statement | None] = collections.deque()
        # Whether the server was asked to send its answers since the last command.
        self._asked = True
        self._error: psycopg.Error | None = None
        self._error_raised = False
        self._pgconn.enter_pipeline_mode()

    def execute(self, sql: str, parameters: Any = ()) -> Statement:
        query = numbered(sql)
        values = tuple(parameters) if parameters else ()
        dumper = self._dumper
        params = dumper.dump_sequence(values, _formats(len(values))) if values else None
        types: tuple[int, ...] = tuple(dumper.types or ()) if values else ()
        formats = dumper.formats if values else None
        key = (query, types)
        pgconn = self._pgconn
        name = self._prepared.get(key)
        if name is None and len(self._prepared) < MAX_PREPARED:
            name = b"market_%d" % next(_names)
            self._prepared[key] = name
            pgconn.send_prepare(name, query, param_types=types)
            self._waiting.append(Statement(self, key))
        if name is None:
            pgconn.send_query_params(query, params, param_formats=formats, param_types=types)
        else:
            pgconn.send_query_prepared(name, params, param_formats=formats, result_format=_TEXT)
        statement = Statement(self, None)
        self._waiting.append(statement)
        self._asked = False
        if params and sum(len(p) for p in params if p is not None) > SEND_AT_ONCE_BYTES:
            self._send()
        return statement

    def receive(self, statement: Statement) -> None:
        """Read results until `statement` has its own."""
        if statement.done:
            return
        if not self._asked:
            self._pgconn.send_flush_request()
            self._asked = True
        self._read_until(statement)

    def sync(self) -> None:
        """Wait for every statement sent so far; raise the first error not raised yet."""
        self._pgconn.pipeline_sync()
        self._waiting.append(None)
        self._asked = True
        self._read_until(None)
        self.raise_first_error()

    def sync_later(self) -> None:
        """End the statements sent so far as one implicit transaction (or the explicit one's
        part so far), without waiting: an error before it no longer skips what comes after."""
        self._pgconn.pipeline_sync()
        self._waiting.append(None)
        self._asked = True

    def raise_first_error(self) -> None:
        if self._error is not None and not self._error_raised:
            self._error_raised = True
            if isinstance(self._error, psycopg.OperationalError):
                self._lost(self._error)
            raise self._error

    def close(self) -> None:
        """Sync (raising as sync does) and leave pipeline mode."""
        try:
            if self._waiting or self._error is not None:
                self.sync()
        finally:
            if self._pgconn.status == pq.ConnStatus.OK and not self._waiting:
                self._pgconn.exit_pipeline_mode()

    def _send(self) -> None:
        """Send everything libpq holds, reading what the server answers meanwhile so that
        neither side waits on the other."""
        pgconn = self._pgconn
        while pgconn.flush():
            readable, _, _ = select.select([pgconn.socket], [pgconn.socket], [])
            if readable:
                pgconn.consume_input()

    def _read_until(self, last: Statement | None) -> None:
        """Read results in order until the command `last` (None: the last sync) is done."""
        self._send()
        pgconn = self._pgconn
        waiting = self._waiting
        while waiting and (last is None or not last.done):
            if pgconn.status != pq.ConnStatus.OK:
                raise psycopg.OperationalError("the connection to the server was lost")
            if pgconn.is_busy():
                select.select([pgconn.socket], [], [])
                pgconn.consume_input()
                continue
            result = pgconn.get_result()
            head = waiting[0]
            if head is None:
                # A sync: its one result has no end marker after it.
                if result is None or result.status != _PIPELINE_SYNC:
                    self._broken(result)
                waiting.popleft()
                continue
            if result is None:
                waiting.popleft()
                head.done = True
                self._ended(head)
                continue
            head._take(result)
            if result.status == _FATAL_ERROR and self._error is None:
                self._error = self._error_of(result)

    def _error_of(self, result: pq.abc.PGresult) -> psycopg.Error:
        if result.error_field(pq.DiagnosticField.SQLSTATE) is None:
            # libpq's own (the server went away), not the server's.
            return psycopg.OperationalError(result.get_error_message(self._encoding).strip())
        return errors.error_from_result(result, encoding=self._encoding)

    def _broken(self, result: pq.abc.PGresult | None) -> None:
        """Results out of their order: this connection is given up (the writer connects
        again) rather than read any further."""
        error = (
            self._error_of(result)
            if result is not None and result.status == _FATAL_ERROR
            else psycopg.OperationalError(f"an answer out of order from the server: {result}")
        )
        self._pgconn.finish()
        if isinstance(error, psycopg.OperationalError):
            self._lost(error)
        raise error

    def _ended(self, statement: Statement) -> None:
        key = statement._prepared
        # A statement that failed to prepare (or was skipped after an error) is not kept.
        result = statement._result
        if key is not None and (result is None or result.status != pq.ExecStatus.COMMAND_OK):
            self._prepared.pop(key, None)
