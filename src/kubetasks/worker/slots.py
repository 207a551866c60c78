"""A worker's slots: the claimed tasks it is running, and what happens when one returns,
passes its timeout, or has to be put back.

Sync tasks run on daemon threads, ``async def`` tasks on the event loop. Everything here runs
on the loop but two things, which a lock guards: the count of slots taken, and the line of tasks
claimed ahead. A task thread that finishes takes the next waiting sync task itself, so a worker
running short tasks does not wake the loop between one task and the next.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from uuid import UUID

from kubetasks.backoff import as_backoff
from kubetasks.records import TaskRecord
from kubetasks.worker.attempt import (
    Call,
    Cancelled,
    Failed,
    Result,
    prepare,
    run_async,
    run_sync,
    timed_out,
)
from kubetasks.worker.metrics import WorkerMetrics
from kubetasks.worker.policy import queue_wait
from kubetasks.worker.reporter import Finished, Reporter
from kubetasks.worker.threads import TaskThreads

SHORT_TASK_SECONDS = 0.1
"""While the tasks that end average less than this, a worker claims ahead: more tasks wait,
already claimed, for the next free slot, so the next claim's round trip runs while the current
tasks do. As many wait as the slots get through in about this long (at least ``concurrency``,
at most ``MAX_CLAIMED_AHEAD``), so a waiting task starts within about this long; longer tasks
are left in the queue for other workers."""

MAX_CLAIMED_AHEAD = 256
"""Most tasks that wait claimed ahead. Tasks of a millisecond or less would otherwise let one
claim carry thousands. Claims are cheaper by the task the larger they are, on both sides: the
server plans each claim afresh (0.7 ms), so one default worker draining no-op tasks ran 4,150
tasks/s at 64, 4,620 at 128 and 5,397 at 256, its server CPU 130, 111 and 94 us a task
(bench/PROFILE-worker.md section 8)."""

DURATION_WEIGHT = 0.1
"""Weight of the latest task's duration in the running mean that decides claiming ahead."""


@dataclass(eq=False)
class Running:
    """A claimed task whose outcome is not known yet."""

    record: TaskRecord
    call: Call
    timer: asyncio.TimerHandle | None = None
    async_task: asyncio.Task[Result] | None = None
    started_at: float | None = None
    """``time.monotonic()`` when its function was started; None while it waits for a slot."""
    claim_lost: bool = False
    cancelled: bool = False
    """Someone asked to cancel the task: whatever it returns, it ends CANCELLED."""


class Slots:
    """``concurrency`` places for tasks. ``on_change`` is called when a slot frees up or an
    outcome becomes known, so the claim loop (or the drain) can look again."""

    def __init__(self, concurrency: int, *, reporter: Reporter, metrics: WorkerMetrics,
                 on_change: Callable[[], None]) -> None:
        self.concurrency = concurrency
        self.reporter = reporter
        self.metrics = metrics
        self.on_change = on_change
        self._running: dict[UUID, Running] = {}
        self._lock = threading.Lock()
        """Guards ``_busy`` and ``_waiting``, which task threads change too (``_follow``)."""
        self._waiting: deque[Running] = deque()
        """Claimed ahead, in claim order: each starts when a slot frees (see SHORT_TASK_SECONDS)."""
        self._mean_seconds: float | None = None
        self._busy = 0
        """Slots taken. A sync task past its timeout has its outcome recorded and leaves
        ``_running``, but keeps its slot until its thread returns: the thread cannot be
        stopped, and counting it free would queue the next task behind it."""
        metrics.count_running(lambda: self._busy)

    def open(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._threads = TaskThreads(self.concurrency, loop, self._sync_returned,
                                    follow=self._follow)

    @property
    def free(self) -> int:
        """How many tasks to claim now: the free slots; while tasks are short, room for more to
        wait for a slot (claimed ahead, see ``SHORT_TASK_SECONDS``), claimed once half of the
        slots and the waiting places together (and at least a ``concurrency``) is free, so that
        claims stay large while the tasks still held keep the slots busy."""
        room = self.concurrency - self._busy
        ahead = self._claimed_ahead()
        if not ahead:
            return room
        room += ahead - len(self._waiting)
        return room if room >= max(self.concurrency, (self.concurrency + ahead) // 2) else 0

    def _claimed_ahead(self) -> int:
        """How many tasks may wait claimed for a slot now."""
        mean = self._mean_seconds
        if mean is None or mean >= SHORT_TASK_SECONDS:
            return 0
        through = self.concurrency * SHORT_TASK_SECONDS / max(mean, 1e-9)
        return max(self.concurrency, min(MAX_CLAIMED_AHEAD, int(through)))

    @property
    def unsettled(self) -> int:
        """Claimed tasks whose outcome is not known yet."""
        return len(self._running)

    def claims(self) -> list[UUID]:
        return list(self._running)

    def get(self, claim_id: UUID) -> Running | None:
        return self._running.get(claim_id)

    def start(self, record: TaskRecord) -> None:
        """Run a claimed task, or queue it for the next free slot; one that cannot run at all
        (unknown task, arguments that do not fit) fails at once, without taking a slot."""
        assert record.claim_id is not None
        try:
            call = prepare(record)
        except Exception as error:
            self.metrics.of(record.queue_name, record.task_name).claimed.inc()
            self.reporter.add(Finished(record, Failed(error, 0.0), as_backoff(None)))
            return
        running = Running(record, call)
        self._running[record.claim_id] = running
        if call.task.timeout is not None and not call.task.is_async:
            # From the claim; put off while the task still waits for its slot (_timed_out).
            running.timer = self._loop.call_later(call.task.timeout, self._timed_out,
                                                  record.claim_id)
        with self._lock:
            if self._busy >= self.concurrency or self._waiting:
                self._waiting.append(running)
                return
            self._busy += 1
        self._run(running)

    def take_waiting(self) -> list[Running]:
        """The tasks claimed ahead that have not started, to put back (the worker is stopping)."""
        with self._lock:
            waiting = list(self._waiting)
            self._waiting.clear()
        for running in waiting:
            assert running.record.claim_id is not None
            self._running.pop(running.record.claim_id, None)
            if running.timer is not None:
                running.timer.cancel()
        return waiting

    def _start_waiting(self) -> None:
        """Start waiting tasks in the slots that are free (on the loop)."""
        while True:
            with self._lock:
                if not self._waiting or self._busy >= self.concurrency:
                    return
                running = self._waiting.popleft()
                self._busy += 1
            self._run(running)

    def _run(self, running: Running) -> None:
        """Start a task in a slot already counted as taken (on the loop)."""
        record, call = running.record, running.call
        assert record.claim_id is not None
        if not call.task.is_async:
            self._threads.submit(partial(self._run_on_thread, running))
        elif self._begin(running):
            running.async_task = self._loop.create_task(run_async(call))
            running.async_task.add_done_callback(partial(self._async_returned, record.claim_id))
        else:  # cancelled while it waited: it never runs
            self._loop.call_soon(self._async_settled, record.claim_id, Cancelled(0.0))

    def _begin(self, running: Running) -> bool:
        """Count a task as started, on whichever thread starts it; False if it was cancelled
        while it waited, and so does not run."""
        if running.cancelled:
            return False
        record = running.record
        series = self.metrics.of(record.queue_name, record.task_name)
        series.claimed.inc()
        waited = queue_wait(record)
        series.queue_wait.observe(waited)
        self.reporter.events.started(record, waited)
        running.started_at = time.monotonic()
        return True

    def _run_on_thread(self, running: Running) -> tuple[UUID, Result]:
        assert running.record.claim_id is not None
        if not self._begin(running):
            return running.record.claim_id, Cancelled(0.0)
        return running.record.claim_id, run_sync(running.call)

    def _follow(self) -> Callable[[], tuple[UUID, Result]] | None:
        """On a task thread whose task returned: the next waiting task, if it is a sync one, to
        run in the same slot; else the slot is given up (the loop starts an async one)."""
        with self._lock:
            if not self._waiting or self._waiting[0].call.task.is_async:
                self._busy -= 1
                return None
            running = self._waiting.popleft()
        return partial(self._run_on_thread, running)

    def cancel(self, claim_id: UUID) -> None:
        """Someone asked to cancel this running task: an ``async def`` one is cancelled at once
        (``CancelledError`` where it awaits), a sync one sees ``context.cancelled``."""
        running = self._running.get(claim_id)
        if running is None or running.cancelled:
            return
        running.cancelled = True
        self.reporter.events.note("task.cancelling", running.record,
                                  "cancellation requested; stopping the task", level=logging.INFO)
        if running.async_task is not None:
            running.async_task.cancel()
        if running.call.task.takes_context:
            running.call.args[0].cancellation.set()

    def take_unsettled(self) -> list[Running]:
        """Give up on the tasks still running, to put them back: their outcomes, if they ever
        come, are dropped. Async tasks are cancelled; threads cannot be, and run on."""
        unsettled = list(self._running.values())
        self._running.clear()
        with self._lock:
            self._waiting.clear()
        for running in unsettled:
            if running.timer is not None:
                running.timer.cancel()
            if running.async_task is not None:
                running.async_task.cancel()
        return unsettled

    def _sync_returned(self, results: list[tuple[UUID, Result]]) -> None:
        for claim_id, result in results:
            self._settle(claim_id, result)
        self._start_waiting()  # a thread gave up its slot to a waiting async task
        self.on_change()

    def _async_returned(self, claim_id: UUID, task: asyncio.Task[Result]) -> None:
        # A task the worker cancelled at shutdown is no longer among the running ones, so its
        # outcome is dropped below; one that cancelled itself (a library cancelled what it
        # awaited) is a failure like any other.
        result = (Failed(asyncio.CancelledError("the task was cancelled"), 0.0)
                  if task.cancelled() else task.result())
        self._async_settled(claim_id, result)

    def _async_settled(self, claim_id: UUID, result: Result) -> None:
        with self._lock:
            self._busy -= 1
        self._settle(claim_id, result)
        self._start_waiting()
        self.on_change()

    def _settle(self, claim_id: UUID, result: Result) -> None:
        """A task function returned: report its outcome unless it timed out or was put back
        meanwhile."""
        running = self._running.pop(claim_id, None)
        if not isinstance(result, Cancelled):
            self._learn(result.seconds)
        if running is not None:
            if running.timer is not None:
                running.timer.cancel()
            if running.cancelled:
                result = Cancelled(result.seconds)
            self.reporter.add(Finished(running.record, result, running.call.task.retry_backoff,
                                       running.claim_lost))

    def _learn(self, seconds: float) -> None:
        mean = self._mean_seconds
        self._mean_seconds = seconds if mean is None else mean + DURATION_WEIGHT * (seconds - mean)

    def _timed_out(self, claim_id: UUID) -> None:
        running = self._running.get(claim_id)
        if running is None:
            return
        task = running.call.task
        assert task.timeout is not None
        started = running.started_at
        left = task.timeout if started is None else started + task.timeout - time.monotonic()
        if left > 0:  # it waited for its slot: the timeout counts from its start
            running.timer = self._loop.call_later(left, self._timed_out, claim_id)
            return
        del self._running[claim_id]
        self.reporter.events.note(
            "task.timed_out", running.record, "task passed its timeout of %g s; its thread keeps "
            "running and keeps its slot until the function returns", task.timeout,
            duration=task.timeout)
        self.reporter.add(Finished(running.record, Failed(timed_out(task), task.timeout),
                                   task.retry_backoff, running.claim_lost))
        self.on_change()
