"""Writing the outcomes of attempts back to the store, fenced on each task's claim.

Successes are batched: whatever finishes while one write is on its way goes into the next, so
batches grow with the load while a lone task is written at once. A failed attempt is written
on its own, as a retry or a failure, after ``policy.after_failure``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from kubetasks.backoff import Backoff
from kubetasks.execution import error_from_exception
from kubetasks.records import TaskRecord
from kubetasks.result import TaskError
from kubetasks.store import DATABASE_AWAY, DatabaseError, Outcome, Store
from kubetasks.worker.attempt import Cancelled, Failed, Result, Succeeded
from kubetasks.worker.events import TaskEvents
from kubetasks.worker.metrics import WorkerMetrics
from kubetasks.worker.policy import (
    UNKNOWN_TASK_GRACE,
    PutBack,
    RetryAt,
    after_failure,
    reconnect_delay,
)

log = logging.getLogger(__name__)

LEARN_EVERY_SECONDS = 1.0
"""How often a worker folds the durations of one task name into its estimate: from the batch of
successes written once a second has passed since the last. Folding every batch made workers
queue on the name's row of ``kubetasks_durations``: 11 % of throughput at two processes."""


@dataclass(frozen=True, slots=True)
class Finished:
    """An attempt whose outcome is known and still has to be written."""

    record: TaskRecord
    result: Result
    backoff: Backoff
    claim_lost: bool = False
    """A heartbeat already found the claim taken away (and counted it)."""


class Reporter:
    """Collects finished attempts on the event loop and writes them from a thread."""

    def __init__(self, store: Store, metrics: WorkerMetrics, *, worker_id: str,
                 after_failures: Callable[[], None],
                 unknown_task_grace: timedelta = UNKNOWN_TASK_GRACE) -> None:
        """``after_failures`` is called once failed attempts are written: a retry scheduled
        then may be due before the claim loop's next poll."""
        self.store = store
        self.metrics = metrics
        self.worker_id = worker_id
        self.unknown_task_grace = unknown_task_grace
        self.events = TaskEvents(worker_id)
        self.after_failures = after_failures
        self._pending: list[Finished] = []
        self._learned_at: dict[str, float] = {}
        """When each task name's durations were last folded into its estimate (monotonic)."""
        self._has_pending = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    def add(self, finished: Finished) -> None:
        self._pending.append(finished)
        self._has_pending.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="kubetasks-reporter")

    async def close(self) -> None:
        """Write what is pending, then stop. Gives up if the database is away: those tasks stay
        RUNNING under this worker's claim, for the operator to put back."""
        self._closing = True
        self._has_pending.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        failures = 0
        while not (self._closing and not self._pending):
            await self._has_pending.wait()
            self._has_pending.clear()
            batch, self._pending = self._pending, []
            had_failures = any(isinstance(f.result, Failed) for f in batch)
            try:
                await asyncio.to_thread(self._write, batch)
                failures = 0
                if had_failures:
                    self.after_failures()
            except DATABASE_AWAY as error:
                self._pending[:0] = batch  # what _write left in it was not written
                failures += 1
                if self._closing:
                    log.error("database unreachable at shutdown: %d outcomes not recorded; their "
                              "tasks stay RUNNING until put back as lost", len(self._pending))
                    return
                log.warning("cannot record outcomes, reconnecting to write them again: %s", error)
                self._has_pending.set()
                await asyncio.sleep(reconnect_delay(failures))
            except Exception:
                # A bug must not silence the reporter for good: drop what could not be written
                # (those tasks stay RUNNING until put back as lost) and carry on.
                log.exception("%d outcomes not recorded", len(batch))

    # -- on a thread -------------------------------------------------------------------

    def _write(self, batch: list[Finished]) -> None:
        """Leave in ``batch`` only what was not written, so that the caller can put back exactly
        that when the database goes away."""
        successes = [f for f in batch if isinstance(f.result, Succeeded)]
        if successes:
            try:
                self._complete(successes)
            except DATABASE_AWAY:
                raise
            except DatabaseError:
                # The database refused something in the data, not the connection: alone, one
                # bad entry cannot hold back the others.
                log.warning("a batch of %d successes was refused; writing them one at a time",
                            len(successes), exc_info=True)
            else:
                batch[:] = [f for f in batch if isinstance(f.result, Failed)]
        while batch:
            self._write_alone(batch[0])
            del batch[0]

    def _write_alone(self, finished: Finished) -> None:
        """Write one outcome. One that cannot be written as it is (the database refuses it, or
        no retry can be scheduled from it) ends the task FAILED saying why: a task never stays
        RUNNING because of its outcome, and the rest of the batch is written all the same."""
        try:
            if isinstance(finished.result, Succeeded):
                self._complete([finished])
            elif isinstance(finished.result, Cancelled):
                self._cancelled(finished)
            else:
                self._fail_or_retry(finished)
        except DATABASE_AWAY:
            raise
        except Exception as error:
            self.events.note("task.unwritable", finished.record,
                             "the outcome could not be recorded as it is; recording the task as "
                             "FAILED instead", level=logging.ERROR, exc_info=True,
                             duration=finished.result.seconds)
            self._fail_unwritable(finished, error)

    def _cancelled(self, finished: Finished) -> None:
        record = finished.record
        assert record.claim_id is not None
        if self.store.cancel_running(record.claim_id):
            self.events.note("task.cancelled", record, "task cancelled on request",
                             level=logging.INFO, duration=finished.result.seconds)
        else:
            self._claim_was_lost(finished)

    def _fail_unwritable(self, finished: Finished, error: Exception) -> None:
        record = finished.record
        assert record.claim_id is not None
        outcome = "success" if isinstance(finished.result, Succeeded) else "failure"
        note = f"the {outcome} of attempt {record.attempts} could not be recorded"
        try:
            held = self.store.fail(record.claim_id,
                                   self._error_json(error, attempt=record.attempts, note=note))
        except DATABASE_AWAY:
            raise
        except DatabaseError:
            self.events.note("task.unrecorded", record, "outcome not recorded: the database "
                             "refused it; the task stays RUNNING until put back as lost",
                             level=logging.ERROR, exc_info=True, duration=finished.result.seconds)
            return
        if held:
            self.metrics.of(record.queue_name, record.task_name).failed.inc()
        else:
            self._claim_was_lost(finished)

    def _complete(self, done: list[Finished]) -> None:
        outcomes = []
        for f in done:
            assert isinstance(f.result, Succeeded) and f.record.claim_id is not None
            outcomes.append(Outcome(f.record.claim_id, f.result.return_json, f.result.seconds))
        learn = self._due_to_learn(f.record.task_name for f in done)
        lost = self.store.complete(outcomes, learn=learn) if outcomes else set()
        for f, outcome in zip(done, outcomes, strict=True):
            series = self.metrics.of(f.record.queue_name, f.record.task_name)
            series.duration.observe(outcome.seconds)
            if not lost or outcome.claim_id not in lost:  # no claim hashed when none was lost
                series.succeeded.inc()
                self.events.succeeded(f.record, outcome.seconds)
            else:
                self._claim_was_lost(f)

    def _due_to_learn(self, names: Iterable[str]) -> list[str]:
        """The names among ``names`` whose durations are due to be folded (``LEARN_EVERY_SECONDS``),
        counted as folded from now."""
        now = time.monotonic()
        due = [name for name in set(names)
               if now - self._learned_at.get(name, -math.inf) >= LEARN_EVERY_SECONDS]
        for name in due:
            self._learned_at[name] = now
        return due

    def _fail_or_retry(self, finished: Finished) -> None:
        record, result = finished.record, finished.result
        assert isinstance(result, Failed) and record.claim_id is not None
        series = self.metrics.of(record.queue_name, record.task_name)
        series.duration.observe(result.seconds)
        decision = after_failure(result.error, attempt=record.attempts,
                                 max_attempts=record.max_attempts, backoff=finished.backoff,
                                 now=datetime.now(UTC), enqueued_at=record.enqueued_at,
                                 unknown_task_grace=self.unknown_task_grace)
        error = self._error_json(result.error, attempt=record.attempts)
        if isinstance(decision, PutBack):
            held = self.store.postpone(record.claim_id, decision.run_after)
            if held:
                self.metrics.released.labels(record.queue_name).inc()
                self.events.note("task.put_back", record, "task %s is not registered in this "
                                 "worker; put back for a worker that knows it (a newer version, "
                                 "during a rollout)", record.task_name, duration=result.seconds)
        elif isinstance(decision, RetryAt):
            held = self.store.retry(record.claim_id, decision.run_after, error)
            if held:
                series.retried.inc()
                self.events.retrying(record, result.seconds, decision.delay, result.error)
        else:
            if decision.note:
                error = self._error_json(result.error, attempt=record.attempts, note=decision.note)
            held = self.store.fail(record.claim_id, error)
            if held:
                series.failed.inc()
                self.events.failed(record, result.seconds, decision.reason, result.error)
        if not held:
            self._claim_was_lost(finished)

    def _claim_was_lost(self, finished: Finished) -> None:
        if not finished.claim_lost:
            self.metrics.claims_lost.labels(finished.record.queue_name).inc()
        self.events.note("task.claim_lost", finished.record, "outcome not recorded: the claim "
                         "was taken away (the task was put back as lost and belongs to a newer "
                         "attempt)", duration=finished.result.seconds)

    def _error_json(self, error: BaseException, *, attempt: int, note: str = "") -> str:
        """The error as stored; ``note`` (why the task failed, when the error alone does not
        say) comes before the error's own message."""
        try:
            described = error_from_exception(error, attempt=attempt, worker_id=self.worker_id)
        except Exception:  # whatever the exception does, its failure must still be recorded
            described = TaskError.of_class(type(error), "<the exception could not be described>",
                                           attempt=attempt, worker_id=self.worker_id)
        message = f"{note}: {described.message}" if note else described.message
        # PostgreSQL cannot store NUL or lone surrogates; an error text must still be stored.
        return replace(described, message=_storable(message),
                       traceback=_storable(described.traceback)).to_json()


def _storable(text: str) -> str:
    text = text.replace("\x00", "\N{REPLACEMENT CHARACTER}")
    return text.encode("utf-8", "replace").decode("utf-8")
