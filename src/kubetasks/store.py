"""The PostgreSQL task store: one method per named statement of ``sql/queries.sql``.

The client, the worker and the operator all go through this class; no other module sends SQL.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import select
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar
from uuid import UUID

import psycopg
from psycopg.adapt import Loader
from psycopg.pq import ExecStatus, Format
from psycopg.rows import dict_row, tuple_row
from psycopg.types.json import JsonbLoader, set_json_loads
from psycopg_pool import ConnectionPool

from kubetasks import collector, payload, tracing
from kubetasks.exceptions import (
    DuplicateTaskError,
    InvalidTaskError,
    TaskLost,
    TaskResultDoesNotExist,
)
from kubetasks.identity import WorkerIdentity, requester
from kubetasks.queries import query
from kubetasks.records import (
    DeadlineWork,
    LostTask,
    QueueSettings,
    QueueStatistics,
    QueueStats,
    RequeuedTask,
    StatisticsRequest,
    TaskRecord,
)
from kubetasks.request import EnqueueRequest, check_queue_name
from kubetasks.result import TaskError, TaskResultStatus
from kubetasks.schedules import DueSchedule, RegisteredSchedule, Schedule, first_tick
from kubetasks.schedules import from_row as schedule_from_row

log = logging.getLogger(__name__)
T = TypeVar("T")

CHANNEL = "kubetasks"
"""NOTIFY channel; the payload is the queue name that got work."""

CLAIM_ORDER = "priority DESC, expected_at ASC NULLS LAST, run_after, id"
"""The order in which a queue's due tasks are claimed: higher priority first, then the earliest
deadline, then the earliest due. The claim index and every statement that follows the order
spell it this way (a test holds them to it)."""

LIMITS_SEEN_SECONDS = 1.0
"""How long a store trusts what it read of which queues have limits. A queue limited meanwhile
gives nothing to the claims that did not lock it, so a stale view delays it, never breaks it."""

UNIQUE_ROUNDS = 5
"""Tries to write a task whose unique key is held, when each time the holder finished before it
could be read: the key is then free, and the next try writes the task."""

MIGRATION_LOCK = 0x6B756265_7461736B & 0x7FFFFFFFFFFFFFFF  # "kubetask", as a bigint

RUNNING_AGE_FACTOR = 2.0
"""The scaler's estimate for a task name that never finished: this many times the age of its
oldest running attempt (when more than the default). The age is a lower bound on the duration,
and twice the time already spent is the usual guess for a duration known only to exceed it;
without it, a first burst of long tasks looks like seconds of work until one finishes
(``bench/scaling_simulation.py`` shows both)."""

COPY_AFTER = 1_000
"""A batch of at least this many tasks, none with a unique key, is sent by ``COPY`` (see the
``enqueue_rows_ids`` statement); a smaller one as arrays, where the extra round trip for its ids
would cost more than it saves."""

ANALYZE_AFTER = 5_000
"""An ``enqueue_many`` of at least this many tasks, on the store's own connection, has the
table analyzed when the planner's statistics know fewer rows than the batch."""

CHECK_IDLE_SECONDS = 1.0
"""A pooled connection idle longer than this is checked (one round trip) before it is lent."""

SESSION_ENDED: tuple[type[BaseException], ...] = (psycopg.errors.AdminShutdown,)
"""The server ended the session (``terminating connection due to administrator command``):
whatever the statement was doing was rolled back with it."""

DatabaseError = psycopg.Error
"""Anything PostgreSQL or the driver refused; callers catch it without importing the driver."""

DATABASE_AWAY: tuple[type[BaseException], ...] = (
    psycopg.OperationalError,          # connection lost, server shutting down, pool timeout
    psycopg.errors.ReadOnlySqlTransaction,  # a primary failing over to a standby
)
"""Errors that mean "the database cannot take this now": try again later, lose nothing."""

COPY_REFUSED: tuple[type[BaseException], ...] = (
    psycopg.errors.InsufficientPrivilege,  # no USAGE on the id sequence (COPY draws from it)
    psycopg.errors.FeatureNotSupported,    # COPY FROM into a table with row-level security
)
"""Errors for which a large batch goes by ``enqueue_tasks`` instead of ``COPY``."""

SCHEMA_MISSING: tuple[type[BaseException], ...] = (
    psycopg.errors.UndefinedTable,     # relation "kubetasks_tasks" does not exist
    psycopg.errors.UndefinedObject,    # type "kubetasks_state" does not exist
    psycopg.errors.UndefinedColumn,    # a schema older than this code
)
"""Errors that mean "this database lacks the kubetasks schema, or has an older one": run
``kubetasks migrate``, then try again."""


def _psycopg_loader(name: str, fmt: Format) -> type[psycopg.abc.Loader]:
    """psycopg's own loader of a built-in type (its C one with ``psycopg[binary]``)."""
    loader = psycopg.adapters.get_loader(psycopg.adapters.types[name].oid, fmt)
    assert loader is not None  # psycopg has one for every built-in type
    return loader


_TIMESTAMPTZ_PARSERS = {fmt: _psycopg_loader("timestamptz", fmt) for fmt in Format}
"""psycopg's own ``timestamptz`` loaders, looked up once: a result makes a loader per column
of the type, two for a one-task enqueue."""


class BoundedTimestamptzLoader(Loader):
    """``timestamptz`` as a datetime; a time no datetime holds (PostgreSQL's ``infinity``, a
    year before 1 or after 9999 in the session's time zone, written by hand: the client never
    writes one) reads as the earliest or the latest datetime instead of failing the whole read.

    The parsing is psycopg's own loader, the C one where psycopg has it: a subclass of the
    Python loader would parse in Python (a fifth of a bulk enqueue's time went to it)."""

    format = Format.TEXT

    def __init__(self, oid: int, context: psycopg.abc.AdaptContext | None = None) -> None:
        super().__init__(oid, context)
        self._parse = _TIMESTAMPTZ_PARSERS[self.format](oid, context).load

    def load(self, data: psycopg.abc.Buffer) -> datetime:
        try:
            value: datetime = self._parse(data)
        except psycopg.DataError:
            return (datetime.min if self.early(bytes(data)) else datetime.max).replace(tzinfo=UTC)
        return value

    @staticmethod
    def early(data: bytes) -> bool:
        return data.startswith(b"-") or data.endswith(b"BC")


class BoundedTimestamptzBinaryLoader(BoundedTimestamptzLoader):
    """``BoundedTimestamptzLoader`` for results in binary (the claim's: decoding its rows
    from text was a third of a claim's time in the client)."""

    format = Format.BINARY

    @staticmethod
    def early(data: bytes) -> bool:
        return int.from_bytes(data, "big", signed=True) < 0


def _register_loaders(context: psycopg.abc.AdaptContext) -> None:
    context.adapters.register_loader("timestamptz", BoundedTimestamptzLoader)
    context.adapters.register_loader("timestamptz", BoundedTimestamptzBinaryLoader)


def _configure_connection(conn: psycopg.Connection[Any]) -> None:
    _register_loaders(conn)
    # jsonb read by kubetasks' own loads: an empty list or object without the parser (parsing
    # a claimed row's four jsonb columns was a tenth of a worker's CPU).
    set_json_loads(payload.loads, conn)


def _server_wrote(conn: psycopg.Connection[Any]) -> bool:
    """Whether the socket of an idle pooled connection has something to read (no round trip):
    the pool's connections LISTEN to nothing, so that is the server ending it (or a rare
    parameter report, which only costs a check)."""
    try:
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
    except (OSError, ValueError, psycopg.Error):
        return True
    return bool(readable)


@dataclass(frozen=True, slots=True)
class Outcome:
    """A successful run, as the worker reports it."""

    claim_id: UUID
    return_json: str
    seconds: float


class Store:
    """Task storage on PostgreSQL through a small connection pool (opened on first use).

    Methods that take ``connection=`` run on the caller's connection, in its transaction.
    """

    def __init__(self, conninfo: str = "", *, min_size: int = 1, max_size: int = 4,
                 timeout: float = 30.0) -> None:
        self.conninfo = conninfo
        self.pool = ConnectionPool(
            conninfo, min_size=min_size, max_size=max_size, open=False, timeout=timeout,
            kwargs={"autocommit": True, "row_factory": dict_row}, name="kubetasks",
            configure=_configure_connection,
            # A connection idle for a while is checked before it is lent: after a PostgreSQL
            # restart the pool holds dead ones, which would fail the caller's statement.
            check=self._check_idle,
        )
        self._last_used: dict[int, float] = {}
        """When each pooled connection (by id) last finished a statement without error."""
        self._opened = False
        self._limited: tuple[float, frozenset[str]] = (-math.inf, frozenset())
        self._opening = threading.Lock()  # threads (and aenqueue's) may race to open it

    def close(self) -> None:
        with self._opening:
            if self._opened:
                self.pool.close()
                self._opened = False

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def connect(self) -> psycopg.Connection[dict[str, Any]]:
        """A dedicated autocommit connection, e.g. for LISTEN. The caller closes it."""
        return psycopg.connect(self.conninfo, autocommit=True, row_factory=dict_row)

    @contextmanager
    def connection(self, given: psycopg.Connection[Any] | None = None,
                   ) -> Iterator[psycopg.Connection[Any]]:
        if given is not None:
            yield given
            return
        if not self._opened:
            with self._opening:
                if not self._opened:
                    self.pool.open(wait=True)
                    self._opened = True
        # getconn/putconn rather than the pool's context manager, which also ends a transaction
        # on the way out: these connections are in autocommit mode, and a transaction block
        # ends itself (the pool rolls back, and warns of, any other).
        conn = self.pool.getconn()
        try:
            yield conn
            self._last_used[id(conn)] = time.monotonic()
        finally:
            self.pool.putconn(conn)

    def _check_idle(self, conn: psycopg.Connection[Any]) -> None:
        """Check a connection with a round trip only if it sat idle past ``CHECK_IDLE_SECONDS``
        or the server has written to it since its last statement: a check costs as much as the
        worker's claim itself, and one that just served is alive unless the server ended it
        (a restart or ``pg_terminate_backend`` sends an error and closes the socket, which the
        pool then drops instead of failing the caller's statement)."""
        idle = time.monotonic() - self._last_used.get(id(conn), -math.inf) > CHECK_IDLE_SECONDS
        if idle or _server_wrote(conn):
            ConnectionPool.check_connection(conn)

    def _rows(self, name: str, params: dict[str, Any],
              connection: psycopg.Connection[Any] | None = None, *,
              binary: bool = False) -> list[dict[str, Any]]:
        """The rows of a named statement; in ``binary`` for results that are costly to parse
        from text (arrays of times and numbers)."""
        if connection is not None:
            return self._execute(name, params, connection, binary)
        return self._on_live_session(lambda: self._execute(name, params, None, binary))

    def _on_live_session(self, work: Callable[[], T]) -> T:
        """Run ``work``, which takes a pooled connection, again when the server turns out to
        have ended that connection's session (a restart, ``pg_terminate_backend``) between the
        lend's check and the statement: the statement then did nothing (the server rolls back
        what a session it ends was doing) and the pool drops the connection, so each try
        clears one dead connection, up to the pool's size."""
        for _ in range(self.pool.max_size):
            try:
                return work()
            except SESSION_ENDED:
                continue
        return work()

    def _execute(self, name: str, params: dict[str, Any], connection: psycopg.Connection[Any] | None,
                 binary: bool = False) -> list[dict[str, Any]]:
        with (self.connection(connection) as conn,
              conn.cursor(row_factory=dict_row, binary=binary) as cur):
            if connection is not None:
                # The caller's connection may load JSON its own way (Django keeps it as text).
                cur.adapters.register_loader("jsonb", JsonbLoader)
                _register_loaders(cur)
            cur.execute(query(name), params, prepare=True)
            # Whether rows came back, from the result's status: ``cur.description`` would build
            # a Column object per column, a tenth of a one-task enqueue's time in the client.
            result = cur.pgresult
            return cur.fetchall() if result is not None and result.status == ExecStatus.TUPLES_OK else []

    # -- enqueue and read --------------------------------------------------------------

    def enqueue(self, requests: Sequence[EnqueueRequest], *,
                connection: psycopg.Connection[Any] | None = None,
                unique_conflict: str = "return") -> list[TaskRecord]:
        """Insert the tasks in one statement; listeners are notified when it commits.

        A request whose ``unique_key`` a live task holds (or an earlier request of the same
        call) gets that task's record instead; with ``unique_conflict="raise"`` it raises
        ``DuplicateTaskError`` and nothing of the call is written (a savepoint inside the
        caller's transaction)."""
        if not requests:
            return []
        if unique_conflict == "raise" and any(r.unique_key for r in requests):
            def all_or_nothing() -> list[tuple[TaskRecord, bool]]:
                with self.connection(connection) as conn, conn.transaction():
                    written = self._write_unique(requests, conn)
                    _refuse_duplicates(requests, written)
                    return written
            written = (all_or_nothing() if connection is not None
                       else self._on_live_session(all_or_nothing))
        else:
            written = self._write_unique(requests, connection)
        if connection is None and len(requests) >= ANALYZE_AFTER:
            self._analyze_if_stale(len(requests))
        return [record for record, _ in written]

    def _analyze_if_stale(self, written: int) -> None:
        """Have the planner count a large batch just written, if its statistics know fewer
        rows than the batch alone (see ``analyze_tasks``)."""
        [row] = self._rows("planner_rows", {})
        if row["planner_rows"] < written:
            def analyze() -> None:
                with self.connection() as conn, conn.transaction():
                    conn.execute(query("analyze_sample"))
                    conn.execute(query("analyze_tasks"))
            self._on_live_session(analyze)

    def _write_unique(self, requests: Sequence[EnqueueRequest],
                      connection: psycopg.Connection[Any] | None) -> list[tuple[TaskRecord, bool]]:
        """(record, written) for each request, in order: a task whose key is held gets the
        holder, read by a second statement (its snapshot sees a holder that committed while
        the insert waited for it)."""
        done: dict[int, tuple[TaskRecord, bool]] = {}
        pending = list(range(len(requests)))
        trace_context = tracing.current_context_json()  # the caller's span, if it is traced
        for _ in range(UNIQUE_ROUNDS):
            batch = [requests[i] for i in pending]
            if len(batch) == 1:
                rows = self._rows("enqueue_task", _one_task_params(batch[0], trace_context),
                                  connection)
            else:
                copied = (self._enqueue_copied(batch, trace_context, connection)
                          if _copyable(batch) else None)
                rows = copied if copied is not None else self._rows(
                    "enqueue_tasks", _enqueue_params(batch, trace_context), connection)
            with collector.paused(len(pending)):
                held = _match_written(requests, pending, rows, done, trace_context)
            if held:
                rows = self._rows("unique_holders", {
                    "task_names": [requests[i].task_name for i in held],
                    "unique_keys": [requests[i].unique_key for i in held]}, connection)
                holders = {(r["task_name"], r["unique_key"]): TaskRecord.from_row(r) for r in rows}
                for i in held:
                    holder = holders.get((requests[i].task_name, requests[i].unique_key))
                    if holder is not None:
                        done[i] = (holder, False)
            pending = [i for i in held if i not in done]
            if not pending:
                return [done[i] for i in range(len(requests))]
        first = requests[pending[0]]
        raise InvalidTaskError(
            f"unique_key {first.unique_key!r} of task {first.task_name} was held and freed "
            f"{UNIQUE_ROUNDS} times while enqueueing; enqueue it again")

    def _enqueue_copied(self, requests: Sequence[EnqueueRequest], trace_context: str | None,
                        connection: psycopg.Connection[Any] | None) -> list[dict[str, Any]] | None:
        """``enqueue_tasks`` for a large batch without unique keys, by ``COPY`` into the task
        table, with ids drawn first (``enqueue_rows_ids``), within one transaction: the caller's
        (in a savepoint), or one of its own (on the store's connection, or on a caller's in
        autocommit mode, which commits the batch at once as ``enqueue_tasks`` would). Returns
        what ``enqueue_tasks`` returns of each row, computed as the database would have; None,
        with nothing written, where the role may not draw from the sequence or the table has
        row-level security (``COPY`` refuses it): the caller then sends ``enqueue_tasks``."""
        def write() -> list[dict[str, Any]] | None:
            with self.connection(connection) as conn:
                try:
                    with conn.transaction(), conn.cursor(row_factory=tuple_row) as cur:
                        return self._copy_rows(cur, requests, trace_context)
                except COPY_REFUSED as error:
                    log.info("a batch of %d tasks goes as one INSERT instead of COPY: %s",
                             len(requests), str(error).strip())
                    return None
        return write() if connection is not None else self._on_live_session(write)

    @staticmethod
    def _copy_rows(cur: psycopg.Cursor[Any], requests: Sequence[EnqueueRequest],
                   trace_context: str | None) -> list[dict[str, Any]]:
        cur.execute(query("enqueue_rows_ids"), {"count": len(requests)}, binary=True)
        [[now, ids]] = cur.fetchall()
        with collector.paused(len(requests)):  # building the rows, and COPY's buffer only
            rows = [{"id": task_id, "task_name": r.task_name, "unique_key": None,
                     "enqueued_at": now, "run_after": _run_after(r, now)}
                    for task_id, r in zip(sorted(ids), requests, strict=True)]
            with cur.copy(query("enqueue_rows_copy")) as copy:
                for row, r in zip(rows, requests, strict=True):
                    copy.write_row((
                        row["id"], r.queue_name, r.task_name, r.priority, r.args_json,
                        r.kwargs_json, r.context_json, row["run_after"], r.expected_at,
                        r.max_attempts, trace_context))
        return rows

    def get(self, task_id: int | str, *,
            connection: psycopg.Connection[Any] | None = None) -> TaskRecord:
        rows = self._rows("get_task", {"id": _task_id(task_id)}, connection)
        if not rows:
            raise TaskResultDoesNotExist(f"no task with id {task_id!r}")
        return TaskRecord.from_row(rows[0])

    def list_tasks(self, *, queue_name: str | None = None, state: str | None = None,
                   limit: int = 50) -> list[TaskRecord]:
        rows = self._rows("list_tasks", {"queue_name": queue_name, "state": state, "limit": limit})
        return [TaskRecord.from_row(row) for row in rows]

    def cancel(self, task_id: int | str, *, by: str | None = None,
               connection: psycopg.Connection[Any] | None = None) -> bool:
        """Cancel a task, recording ``by`` (default ``user@host``) and when: a READY one ends
        CANCELLED at once; for a RUNNING one the request is recorded and its worker stops it
        within a heartbeat. False if it has finished or is already being cancelled."""
        return bool(self._rows("cancel_task", {"id": _task_id(task_id), "by": by or requester()},
                               connection))

    def cancel_running(self, claim_id: UUID) -> bool:
        """End CANCELLED a task the worker stopped on request; False if the claim was lost."""
        return bool(self._rows("cancel_running", {"claim_id": claim_id}))

    def rerun(self, task_id: int | str, *,
              connection: psycopg.Connection[Any] | None = None) -> bool:
        """Run a FAILED or CANCELLED task again, with one more attempt (an operator's retry,
        e.g. from Django's admin after the cause was fixed); False if it is in another state."""
        try:
            with self.connection(connection) as conn:
                rows = self._rows("rerun_task", {"id": _task_id(task_id)}, conn)
                self._notify(conn, {r["queue_name"] for r in rows})
        except psycopg.errors.UniqueViolation as error:
            # Its unique key went to a newer task meanwhile: the two would both be live.
            detail = error.diag.message_detail or "its unique_key is held by a live task"
            raise DuplicateTaskError(
                f"task {task_id} cannot run again while another task holds its unique key "
                f"({detail}); cancel that task or wait for it to finish", existing=None) from None
        return bool(rows)

    # -- the worker's side -------------------------------------------------------------

    def claim(self, queue_names: Sequence[str], limit: int, worker: WorkerIdentity,
              ) -> list[TaskRecord]:
        """Claim up to ``limit`` due tasks, returned in claim order; concurrent claimers skip
        locked rows. Each queue's claim-order index is walked, so the cost stays flat as the
        backlog grows. Paused queues give nothing. A claim of queues without settings is one
        statement; one that includes a queue with a cap or a rate locks those queues' settings
        rows first, in the same transaction, so it counts every earlier claim's tasks."""
        names = sorted(set(queue_names))
        params = {"queue_names": names, "limit": limit, "pod_name": worker.pod_name,
                  "pod_uid": worker.pod_uid, "nonce": worker.nonce, "worker_id": worker.worker_id}
        limited = not self._limited_queues().isdisjoint(names)  # before taking the connection
        with self.connection() as conn, conn.cursor(row_factory=tuple_row, binary=True) as cur:
            if not limited:
                cur.execute(query("claim_tasks"), params, prepare=True)
                claimed, unreadable = _claimed_rows(cur)
            else:
                with conn.transaction():
                    cur.execute(query("lock_limited_queues"), {"queue_names": names}, prepare=True)
                    cur.execute(query("claim_limited_tasks"), params, prepare=True)
                    claimed, unreadable = _claimed_rows(cur)
        for task_id, claim_id, problem in unreadable:
            self._fail_unreadable(task_id, claim_id, problem)
        return [record for _, record in sorted(claimed, key=lambda pair: pair[0])]

    def _limited_queues(self) -> frozenset[str]:
        """The queues with a cap or a rate, as read at most ``LIMITS_SEEN_SECONDS`` ago."""
        seen_at, names = self._limited
        if time.monotonic() - seen_at < LIMITS_SEEN_SECONDS:
            return names
        names = frozenset(row["queue_name"] for row in self._rows("limited_queues", {}))
        self._limited = (time.monotonic(), names)
        return names

    def _fail_unreadable(self, task_id: int, claim_id: UUID, problem: Exception) -> None:
        """A claimed row that cannot be read cannot be run: it fails alone, saying why, and the
        rest of the claim runs."""
        message = (f"task {task_id} cannot be read from its row ({type(problem).__name__}: "
                   f"{problem}); it was not written by the kubetasks client, which refuses "
                   "such values")
        log.error("claimed a task whose row cannot be read; it fails: %s", message,
                  extra={"task_id": task_id})
        self.fail(claim_id, TaskError.of_class(InvalidTaskError, message).to_json())

    def complete(self, outcomes: Sequence[Outcome], *,
                 learn: Collection[str] | None = None) -> set[UUID]:
        """Record successes; returns the claims that were lost (taken away meanwhile), whose
        outcome was not recorded. The successes' durations are folded into their task names'
        estimates: only those of the names in ``learn``, when it is given."""
        if not outcomes:
            return set()
        rows = self._rows("complete_tasks", {
            "claim_ids": [o.claim_id for o in outcomes],
            "return_values": [o.return_json for o in outcomes],
            "durations": [float(o.seconds) for o in outcomes],
            "learn": None if learn is None else list(learn),
        })
        return {row["claim_id"] for row in rows}

    def fail(self, claim_id: UUID, error: str) -> bool:
        """End a task FAILED with ``error`` (a JSON object); False if the claim was lost."""
        return bool(self._rows("fail_task", {"claim_id": claim_id, "error": error}))

    def retry(self, claim_id: UUID, run_after: datetime, error: str) -> bool:
        """Put a failed attempt back for ``run_after``; False if the claim was lost."""
        return bool(self._rows("retry_task", {"claim_id": claim_id, "run_after": run_after,
                                              "error": error}))

    def postpone(self, claim_id: UUID, run_after: datetime) -> bool:
        """Put a task back for ``run_after`` without counting the attempt (one whose
        cancellation was asked for ends CANCELLED instead); False if the claim was lost."""
        return bool(self._rows("postpone_task", {"claim_id": claim_id, "run_after": run_after}))

    def heartbeat(self, claim_ids: Iterable[UUID]) -> set[UUID]:
        """Refresh the heartbeat; returns the claims still held."""
        return self.keep_claims(claim_ids)[0]

    def keep_claims(self, claim_ids: Iterable[UUID]) -> tuple[set[UUID], set[UUID]]:
        """Refresh the heartbeat; returns the claims still held, and those of them whose task
        someone asked to cancel."""
        ids = list(claim_ids)
        if not ids:
            return set(), set()
        rows = self._rows("heartbeat", {"claim_ids": ids})
        return ({row["claim_id"] for row in rows},
                {row["claim_id"] for row in rows if row["cancel_requested"]})

    def release(self, claim_ids: Iterable[UUID]) -> int:
        """Put back unfinished tasks on a clean shutdown, without counting an attempt."""
        ids = list(claim_ids)
        if not ids:
            return 0
        with self.connection() as conn, conn.transaction():
            rows = self._rows("release_tasks", {"claim_ids": ids}, conn)
            self._notify(conn, {row["queue_name"] for row in rows})
        return len(rows)

    def ready_queues(self, *, excluded: Sequence[str] = ()) -> list[str]:
        """The queues that have READY tasks (due or scheduled), but the ``excluded``: what a
        worker serving every queue claims from."""
        rows = self._rows("ready_queues", {"excluded": sorted(set(excluded))})
        return [r["queue_name"] for r in rows]

    def next_run_after(self, queue_names: Sequence[str]) -> datetime | None:
        rows = self._rows("next_run_after", {"queue_names": list(queue_names)})
        value: datetime | None = rows[0]["next_run_after"]
        return value

    # -- lost tasks --------------------------------------------------------------------

    def requeue_claims(self, claim_ids: Iterable[UUID], *, reason: str,
                       max_lost: int) -> list[RequeuedTask]:
        """Put back tasks whose claiming process is gone, or fail those lost more than
        ``max_lost`` times. Fenced on the claims: a task finished meanwhile is left alone."""
        ids = list(claim_ids)
        if not ids:
            return []
        with self.connection() as conn, conn.transaction():
            rows = self._rows("requeue_lost", {
                "claim_ids": ids, "error": TaskError.of_class(TaskLost, reason).to_json(),
                "max_lost": max_lost}, conn)
            self._notify(conn, {r["queue_name"] for r in rows if r["state"] == "READY"})
        return [RequeuedTask(r["id"], r["queue_name"], r["task_name"], TaskResultStatus(r["state"]),
                             r["attempt"]) for r in rows]

    def requeue_pod(self, pod_uid: str, *, reason: str, max_lost: int,
                    except_nonce: str | None = None,
                    claimed_before: datetime | None = None) -> list[RequeuedTask]:
        """Requeue what a pod instance held: all of it, all but one live process's
        (``except_nonce``), or what was claimed before its container restarted."""
        rows = self._rows("claims_of_pod", {"pod_uid": pod_uid, "except_nonce": except_nonce,
                                            "claimed_before": claimed_before})
        return self.requeue_claims((r["claim_id"] for r in rows), reason=reason, max_lost=max_lost)

    def requeue_absent_pods(self, queue_name: str, live_pod_uids: Iterable[str], *, reason: str,
                            max_lost: int, pod_name_prefix: str = "",
                            min_age: timedelta = timedelta(seconds=10)) -> list[RequeuedTask]:
        """Requeue tasks of ``queue_name`` claimed by pods named ``pod_name_prefix...`` that are
        not in ``live_pod_uids``; claims younger than ``min_age`` are spared, so a pod not yet
        seen by the caller is not robbed."""
        rows = self._rows("claims_of_absent_pods", {
            "queue_name": queue_name, "live_pod_uids": list(live_pod_uids), "min_age": min_age,
            "pod_name_prefix": pod_name_prefix})
        return self.requeue_claims((r["claim_id"] for r in rows), reason=reason, max_lost=max_lost)

    def requeue_stale(self, timeout: timedelta, *, reason: str, max_lost: int,
                      queue_name: str | None = None) -> list[RequeuedTask]:
        """Requeue tasks whose heartbeat is older than ``timeout``."""
        rows = self._rows("claims_with_stale_heartbeat",
                          {"timeout": timeout, "queue_name": queue_name})
        return self.requeue_claims((r["claim_id"] for r in rows), reason=reason, max_lost=max_lost)

    def running_to_requeue(self, *, pod_uid: str | None = None, stale: timedelta | None = None,
                           queue_name: str | None = None) -> list[LostTask]:
        """RUNNING tasks of the pod ``pod_uid``, or whose heartbeat is older than ``stale``: what
        ``kubetasks requeue`` shows, then puts back with ``requeue_claims`` in batches."""
        rows = self._rows("running_tasks_to_requeue", {
            "pod_uid": pod_uid, "timeout": stale, "queue_name": queue_name})
        return [LostTask(r["id"], r["queue_name"], r["task_name"], r["claim_id"], r["worker_pod"],
                         r["lost_count"]) for r in rows]

    # -- schedules ---------------------------------------------------------------------

    def register_schedules(self, schedules: Sequence[Schedule], *, now: datetime,
                           replace_source: str | None = None) -> list[str]:
        """Insert or update schedules by name; a schedule whose timing changed starts from its
        first tick after ``now``. With ``replace_source``, that source's schedules not among
        these are deleted (a TaskQueue's edited ``spec.schedules``). Returns the names
        inserted or changed."""
        with self.connection() as conn, conn.transaction():
            rows = self._rows("register_schedules", {
                "names": [s.name for s in schedules],
                "queue_names": [s.queue_name for s in schedules],
                "task_names": [s.task_name for s in schedules],
                "crons": [s.cron for s in schedules],
                "every_seconds": [s.every.total_seconds() if s.every else None for s in schedules],
                "timezones": [s.timezone for s in schedules],
                "args": [s.args_json for s in schedules],
                "kwargs": [s.kwargs_json for s in schedules],
                "priorities": [s.priority for s in schedules],
                "max_attempts": [s.max_attempts for s in schedules],
                "missed": [s.missed for s in schedules],
                "sources": [s.source for s in schedules],
                "next_ticks": [first_tick(s, now) for s in schedules],
            }, conn) if schedules else []
            if replace_source is not None:
                self._rows("delete_schedules_of_source", {
                    "source": replace_source, "keep": [s.name for s in schedules]}, conn)
        return [row["name"] for row in rows]

    def due_schedules(self, queue_names: Sequence[str] | None) -> list[DueSchedule]:
        """Schedules whose next tick has come, by the database's clock. A row this process
        cannot read is logged and left to those that can."""
        due = []
        rows = self._rows("due_schedules", {"queue_names": list(queue_names) if queue_names else None})
        for row in rows:
            try:
                due.append(DueSchedule(schedule_from_row(row), row["next_tick"], row["db_now"]))
            except InvalidTaskError as error:
                log.error("schedule %s cannot be fired here: %s", row["name"], error,
                          extra={"queue": row["queue_name"]})
        return due

    def fire_schedule(self, name: str, *, expected_tick: datetime, tick: datetime | None,
                      next_tick: datetime) -> tuple[bool, int | None]:
        """Move schedule ``name`` from ``expected_tick`` on to ``next_tick`` and, with a
        ``tick``, enqueue its task for that tick. Returns whether this call moved it (another
        firer may have been first) and the id of the task it enqueued."""
        row = self._rows("fire_schedule", {"name": name, "expected_tick": expected_tick,
                                           "tick": tick, "next_tick": next_tick})[0]
        return bool(row["advanced"]), row["task_id"]

    def next_schedule_tick(self, queue_names: Sequence[str] | None) -> datetime | None:
        rows = self._rows("next_schedule_tick",
                          {"queue_names": list(queue_names) if queue_names else None})
        value: datetime | None = rows[0]["next_tick"]
        return value

    def list_schedules(self, queue_name: str | None = None) -> list[RegisteredSchedule]:
        """Every registered schedule, with the task its last tick enqueued."""
        return [RegisteredSchedule(
                    schedule=schedule_from_row(row), next_tick=row["next_tick"],
                    last_tick=row["last_tick"], last_task_id=row["last_task_id"],
                    last_task_state=row["last_task_state"])
                for row in self._rows("list_schedules", {"queue_name": queue_name})]

    def delete_schedule(self, name: str) -> bool:
        """Forget a schedule (one removed from the code goes on firing until then)."""
        return bool(self._rows("delete_schedule", {"name": name}))

    # -- queue settings: paused, cap, rate --------------------------------------------

    def queue_settings(self, queue_names: Sequence[str]) -> list[QueueSettings]:
        """The settings of each queue, in the order given (defaults for a queue never set)."""
        rows = self._rows("queue_settings", {"queue_names": list(queue_names)})
        found = {row["queue_name"]: QueueSettings(**row) for row in rows}
        return [found.get(name) or QueueSettings(name) for name in queue_names]

    def set_paused(self, queue_name: str, paused: bool) -> QueueSettings:
        """Pause or resume a queue: every worker's next claim honours it; a NOTIFY wakes them.
        Tasks still enqueue into a paused queue; running ones finish."""
        rows = self._rows("set_queue_paused", {"queue_name": check_queue_name(queue_name, None),
                                               "paused": bool(paused), "channel": CHANNEL})
        return _settings(rows[0])

    def set_limits(self, limits: QueueSettings) -> QueueSettings:
        """Set (or, with None, lift) the queue's cap on RUNNING tasks and its rate of starts;
        ``limits.paused`` is not written (see ``set_paused``)."""
        rows = self._rows("set_queue_limits", {
            "queue_name": check_queue_name(limits.queue_name, None),
            "max_running": limits.max_running, "rate_limit": limits.rate_limit,
            "rate_period": limits.rate_period, "channel": CHANNEL})
        self._limited = (-math.inf, frozenset())  # this process's claims see it at once
        return _settings(rows[0])

    # -- statistics and housekeeping ---------------------------------------------------

    def queue_stats(self, queue_names: Sequence[str] | None = None) -> list[QueueStats]:
        rows = self._rows("queue_stats", {"queue_names": list(queue_names) if queue_names else None})
        return [QueueStats(**row) for row in rows]

    def busy_pods(self, queue_name: str) -> dict[str, int]:
        """Running tasks per pod UID."""
        rows = self._rows("busy_pods", {"queue_name": queue_name})
        return {r["worker_pod_uid"]: r["running"] for r in rows if r["worker_pod_uid"]}

    def deadline_work(self, queue_name: str, *, horizon: timedelta = timedelta(0),
                      default_seconds: float = 1.0, scan_limit: int = 10_000,
                      limit: int = 1000) -> list[DeadlineWork]:
        """The READY tasks with a deadline, in claim order, with the estimated work up to each
        (see ``RUNNING_AGE_FACTOR`` for a task name that never finished)."""
        rows = self._rows("deadline_work", {
            "queue_name": queue_name, "horizon": horizon, "default_seconds": default_seconds,
            "age_factor": RUNNING_AGE_FACTOR, "scan_limit": scan_limit, "limit": limit})
        return [DeadlineWork(**row) for row in rows]

    def backlog_work(self, queue_name: str, *, default_seconds: float = 1.0) -> float:
        """Estimated seconds of work of the queue's due and running tasks."""
        rows = self._rows("backlog_work", {"queue_name": queue_name, "default_seconds": default_seconds,
                                           "age_factor": RUNNING_AGE_FACTOR})
        return float(rows[0]["work_seconds"])

    def oldest_ready_seconds(self, queue_name: str) -> float:
        """How long the queue's longest-waiting due READY task has waited, in seconds (0 if
        none is due): what tells a stuck queue from a busy one."""
        return float(self._rows("oldest_ready", {"queue_name": queue_name})[0]["seconds"])

    def queue_statistics(self, queue_name: str, *, scan_limit: int,
                         horizon: timedelta = timedelta(0),
                         default_seconds: float = 1.0, deadline_limit: int = 1000) -> QueueStatistics:
        """Everything a scaling step reads of one queue, in one statement that reads only bounded
        slices of the partial indexes, so that it costs the same at a thousand and at a million
        READY tasks and ignores finished ones: the first ``scan_limit`` tasks in claim order due
        within ``horizon`` (their work and deadlines, as ``backlog_work`` and ``deadline_work``
        read them for the whole queue), the RUNNING tasks, counts capped at ``scan_limit``, and
        the queue's settings. ``queue_stats`` counts exactly, for ``kubetasks status``."""
        wanted = StatisticsRequest(queue_name, scan_limit, horizon, default_seconds, deadline_limit)
        return self.queues_statistics([wanted])[wanted]

    def queues_statistics(self, requests: Sequence[StatisticsRequest]
                          ) -> dict[StatisticsRequest, QueueStatistics]:
        """``queue_statistics`` of several queues in one statement (one round trip however many
        TaskQueues an operator serves on this database)."""
        for wanted in requests:
            if (isinstance(wanted.scan_limit, bool) or not isinstance(wanted.scan_limit, int)
                    or wanted.scan_limit < 1):
                raise ValueError(f"scan_limit {wanted.scan_limit!r} is invalid: use an int >= 1")
        rows = self._rows("queue_statistics", {
            "queue_names": [w.queue_name for w in requests],
            "scan_limits": [w.scan_limit for w in requests],
            "horizons": [w.horizon for w in requests],
            "default_seconds": [float(w.default_seconds) for w in requests],
            "deadline_limits": [w.deadline_limit for w in requests],
            "age_factor": RUNNING_AGE_FACTOR}, binary=True)
        return {wanted: _statistics(wanted, row) for wanted, row in zip(requests, rows, strict=True)}

    def count_prunable(self, *, successful: timedelta, failed: timedelta,
                       queue_name: str | None = None) -> int:
        """How many finished tasks ``prune`` with these retentions would delete now."""
        rows = self._rows("count_prunable", {"successful": successful, "failed": failed,
                                             "queue_name": queue_name})
        return int(rows[0]["prunable"])

    def prune(self, *, successful: timedelta, failed: timedelta, queue_name: str | None = None,
              batch: int = 5000, max_batches: int | None = None) -> int:
        """Delete finished tasks older than the retention of their state, in batches (at most
        ``max_batches``, so that a periodic caller is never held up for long)."""
        total = 0
        for _ in itertools.count() if max_batches is None else range(max_batches):
            rows = self._rows("prune_finished", {"successful": successful, "failed": failed,
                                                 "queue_name": queue_name, "limit": batch})
            deleted = int(rows[0]["deleted"])
            total += deleted
            if deleted < batch:
                break
        return total

    def _notify(self, conn: psycopg.Connection[Any], queue_names: set[str]) -> None:
        if queue_names:
            self._rows("notify_queues", {"channel": CHANNEL, "queue_names": sorted(queue_names)}, conn)

    # -- notifications ---------------------------------------------------------------

    def listen(self) -> psycopg.Connection[dict[str, Any]]:
        """A dedicated connection LISTENing on ``CHANNEL``. The caller closes it."""
        conn = self.connect()
        try:
            conn.execute(query("listen_for_tasks"))
        except BaseException:
            conn.close()
            raise
        return conn

    async def listen_async(self) -> psycopg.AsyncConnection[Any]:
        """The same on an asyncio connection (the operator's). The caller closes it."""
        conn = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
        try:
            await conn.execute(query("listen_for_tasks"))
        except BaseException:
            await conn.close()
            raise
        return conn


class SchemaChange(Protocol):
    """One numbered migration file."""

    @property
    def version(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def sql(self) -> str: ...


def apply_migrations(changes: Iterable[SchemaChange], *, conninfo: str = "",
                     connection: psycopg.Connection[Any] | None = None) -> list[int]:
    """Apply, in order, the changes not yet recorded in ``kubetasks_migrations``, each in its
    own transaction under an advisory lock; returns the versions applied."""
    conn = connection or psycopg.connect(conninfo)
    try:
        done = []
        for change in changes:
            if _apply_once(conn, change):
                done.append(change.version)
        return done
    finally:
        if connection is None:
            conn.close()


def _apply_once(conn: psycopg.Connection[Any], change: SchemaChange) -> bool:
    with conn.transaction():
        conn.execute(query("lock_migrations"), {"lock_key": MIGRATION_LOCK})
        conn.execute(query("create_migrations_table"))
        applied = {row[0] for row in conn.execute(query("applied_migrations"))}
        if change.version in applied:
            return False
        log.info("applying migration %04d_%s", change.version, change.name)
        conn.execute(change.sql.encode())  # bytes: the file's % signs are not placeholders
        conn.execute(query("record_migration"), {"version": change.version, "name": change.name})
        return True


def _claimed_rows(cur: psycopg.Cursor[tuple[Any, ...]],
                  ) -> tuple[list[tuple[int, TaskRecord]], list[tuple[int, UUID, Exception]]]:
    """The claimed rows as (rank, record), and those that cannot be read as (id, claim, why).
    All at once when they can all be read; else one by one, so that one row no value can be
    made of spoils none of the others."""
    result = cur.pgresult
    if result is None:
        return [], []
    try:
        return [(row[-1], _claimed_record(row)) for row in cur.fetchall()], []
    except Exception:  # the row that failed is found, and failed alone, below
        pass
    columns = [column.name for column in cur.description or ()]
    readable, unreadable = [], []
    for index in range(result.ntuples):
        cur.scroll(index, mode="absolute")
        try:
            row = cur.fetchone()
            assert row is not None
            readable.append((row[-1], _claimed_record(row)))
        except Exception as problem:
            # Only the id and the claim (a bigint and a uuid, in binary) are needed to fail it.
            task_id, claim_id = (result.get_value(index, columns.index(name))
                                 for name in ("id", "claim_id"))
            assert task_id is not None and claim_id is not None
            unreadable.append((int.from_bytes(bytes(task_id), "big", signed=True),
                               UUID(bytes=bytes(claim_id)), problem))
    return readable, unreadable


def _claimed_record(row: tuple[Any, ...]) -> TaskRecord:
    """A claimed row: a ``TaskRecord``'s fields in order, then the claim rank. Built from the
    positions: by name, through two dicts of 30 keys, it took 11 µs a task of a worker's CPU,
    against 2 µs."""
    return TaskRecord.from_columns(row[:-1])


ENQUEUE_COLUMNS = ("queue_name", "task_name", "priority", "args", "kwargs", "context",
                   "run_after", "expected_at", "max_attempts", "unique_key", "unique_while",
                   "trace_context")
"""What an enqueue writes of a request, in the order of ``_request_row``: the parameters of
``enqueue_task`` and ``enqueue_tasks``."""


def _request_row(r: EnqueueRequest, trace_context: str | None) -> tuple[Any, ...]:
    return (r.queue_name, r.task_name, r.priority, r.args_json, r.kwargs_json, r.context_json,
            r.run_after, r.expected_at, r.max_attempts, r.unique_key, r.unique_while,
            trace_context)


def _one_task_params(r: EnqueueRequest, trace_context: str | None) -> dict[str, Any]:
    return dict(zip(ENQUEUE_COLUMNS, _request_row(r, trace_context), strict=True))


def _enqueue_params(requests: Sequence[EnqueueRequest],
                    trace_context: str | None) -> dict[str, Any]:
    """One array per column, one element per task."""
    columns = zip(*(_request_row(r, trace_context) for r in requests), strict=True)
    return dict(zip(ENQUEUE_COLUMNS, map(list, columns), strict=True))


def _match_written(requests: Sequence[EnqueueRequest], pending: list[int],
                   rows: list[dict[str, Any]], done: dict[int, tuple[TaskRecord, bool]],
                   trace_context: str | None) -> list[int]:
    """Give each pending request its written row (identities follow the input order; a key's
    first request is written, later ones of the call share it); returns those whose key a
    task outside the call holds."""
    rows = sorted(rows, key=lambda row: int(row["id"]))
    plain = iter([row for row in rows if row["unique_key"] is None])
    by_key = {(row["task_name"], row["unique_key"]): row for row in rows
              if row["unique_key"] is not None}
    trace = None if trace_context is None else json.loads(trace_context)
    shared: dict[tuple[str, str], TaskRecord] = {}
    held = []
    for i in pending:
        request = requests[i]
        if request.unique_key is None:
            done[i] = (_new_record(request, next(plain), trace), True)
            continue
        key = (request.task_name, request.unique_key)
        if key in shared:
            done[i] = (shared[key], False)
        elif key in by_key:
            shared[key] = _new_record(request, by_key[key], trace)
            done[i] = (shared[key], True)
        else:
            held.append(i)
    return held


def _copyable(batch: Sequence[EnqueueRequest]) -> bool:
    """Whether a batch goes by ``COPY``: large, and nothing in it can conflict."""
    return len(batch) >= COPY_AFTER and all(
        r.unique_key is None and r.unique_while is None for r in batch)


def _run_after(request: EnqueueRequest, now: datetime) -> datetime:
    """``enqueue_tasks``' ``coalesce(run_after, least(now(), expected_at))``, in the session's
    time zone as the database would return it."""
    if request.run_after is not None:
        return request.run_after.astimezone(now.tzinfo)
    if request.expected_at is not None:
        return min(now, request.expected_at).astimezone(now.tzinfo)
    return now


def _new_record(request: EnqueueRequest, row: dict[str, Any],
                trace: dict[str, str] | None) -> TaskRecord:
    """The record of a task just written: the request, and what the database decided."""
    return TaskRecord(
        id=row["id"], queue_name=request.queue_name, task_name=request.task_name,
        priority=request.priority, args=request.args, kwargs=request.kwargs,
        context=request.context, state=TaskResultStatus.READY, run_after=row["run_after"],
        expected_at=request.expected_at, enqueued_at=row["enqueued_at"], started_at=None,
        last_attempted_at=None, finished_at=None, attempts=0, max_attempts=request.max_attempts,
        lost_count=0, claim_id=None, worker_pod=None, worker_pod_uid=None, worker_nonce=None,
        heartbeat_at=None, worker_ids=[], return_value=None, errors=[], trace_context=trace)


def _refuse_duplicates(requests: Sequence[EnqueueRequest],
                       written: list[tuple[TaskRecord, bool]]) -> None:
    for request, (record, fresh) in zip(requests, written, strict=True):
        if not fresh:
            raise DuplicateTaskError(
                f"unique_key {request.unique_key!r} of task {request.task_name} is held by task "
                f"{record.id} ({record.state}); nothing was enqueued", existing=record)


def _statistics(wanted: StatisticsRequest, row: dict[str, Any]) -> QueueStatistics:
    return QueueStatistics(
        stats=QueueStats(wanted.queue_name, row["ready"], row["scheduled"], row["running"],
                         row["overdue"], row["next_deadline"], count_limit=wanted.scan_limit),
        busy_pods={uid: int(n) for uid, n in row["busy_pods"].items()},
        deadlines=tuple(map(DeadlineWork, row["deadline_expected_at"], row["deadline_work_seconds"],
                            row["deadline_positions"])),
        work_seconds=float(row["work_seconds"]), oldest_ready_seconds=row["oldest_ready_seconds"],
        settings=_settings(row), scanned=row["scanned"], scan_limit=wanted.scan_limit)


def _settings(row: dict[str, Any]) -> QueueSettings:
    return QueueSettings(**{name: row[name] for name in QueueSettings.__dataclass_fields__})


def _task_id(task_id: int | str) -> int:
    try:
        return int(task_id)
    except (TypeError, ValueError):
        raise TaskResultDoesNotExist(f"task id {task_id!r} is not a kubetasks id (an integer)") from None
