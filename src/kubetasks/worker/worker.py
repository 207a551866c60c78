"""The worker: claims due tasks into its free slots, keeps their claims, and stops cleanly.

One asyncio event loop holds it together: the claim loop, heartbeats and the slots all run on
it, so none of their state needs a lock. The store is synchronous, so database calls go
through ``asyncio.to_thread``; each one carries a batch of tasks, never a single task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import ParamSpec, TypeVar

from kubetasks import schedules
from kubetasks.identity import WorkerIdentity
from kubetasks.store import DATABASE_AWAY, SCHEMA_MISSING, Store
from kubetasks.worker.health import HealthState
from kubetasks.worker.listener import Listener
from kubetasks.worker.metrics import WorkerMetrics
from kubetasks.worker.policy import idle_wait, reconnect_delay, schedule_wait
from kubetasks.worker.reporter import Reporter
from kubetasks.worker.settings import WorkerSettings
from kubetasks.worker.slots import Running, Slots

P = ParamSpec("P")
T = TypeVar("T")
log = logging.getLogger(__name__)

READY_QUEUES_SECONDS = 1.0
"""How long a worker serving every queue claims from the queues that last had READY tasks
before it asks again (a NOTIFY from another queue adds that queue at once)."""


class Worker:
    """``await Worker(...).run()`` until ``stop()``; see ``kubetasks.worker.command``."""

    def __init__(self, settings: WorkerSettings, *, store: Store, identity: WorkerIdentity,
                 metrics: WorkerMetrics, health: HealthState) -> None:
        self.settings = settings
        self.store = store
        self.identity = identity
        self.metrics = metrics
        self.health = health
        self._wake = asyncio.Event()
        self._reporter = Reporter(store, metrics, worker_id=identity.worker_id,
                                  after_failures=self._retries_written,
                                  unknown_task_grace=settings.unknown_task_grace)
        self._slots = Slots(settings.concurrency, reporter=self._reporter, metrics=metrics,
                            on_change=self._wake.set)
        self._stopping = False
        self._stop_requests = 0
        self._drain_deadline: float | None = None
        """Loop time by which running tasks are put back; None: wait for them to finish."""
        self._hurry = False
        self._claimed = 0
        self._database_failures = 0
        self._ready_queues: list[str] | None = None
        """Without ``--queue``: the queues that last had READY tasks, until
        ``_ready_queues_until`` (loop time)."""
        self._ready_queues_until = -math.inf
        self._ready_queues_changes = 0
        """Counts what may have added a queue (a NOTIFY, a written retry)."""

    def stop(self) -> None:
        """Called on SIGTERM/SIGINT: stop claiming and let running tasks finish within the
        grace period. A second call puts back what still runs at once (no attempt counted,
        so another worker runs it again) and the worker exits: Ctrl-C twice never waits."""
        self._stop_requests += 1
        if self._stop_requests > 1:
            log.warning("stop requested again: putting back running tasks now")
            self._hurry = True
        else:
            log.info("stopping: no new claims; waiting up to %g s for %d running tasks",
                     self.settings.grace_period, self._slots.unsettled)
            self._stopping = True
            self._drain_deadline = self._loop.time() + self.settings.grace_period
            self.health.draining = True
        self._wake.set()

    def _finish(self, why: str) -> None:
        """Stop claiming because the work asked for is done (``max_tasks``, or idle with
        ``exit_when_idle``): running tasks finish, however long they take, then the worker
        exits 0. A signal meanwhile limits the wait to the grace period, as ever."""
        if not self._stopping:
            log.info("stopping: %s; waiting for %d running tasks", why, self._slots.unsettled)
            self._stopping = True
            self.health.draining = True

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._slots.open(self._loop)
        log.info("worker %s serving %s with %d slots (%s)", self.identity.worker_id,
                 self.settings.serving, self.settings.concurrency,
                 "LISTEN" if self.settings.listen else "polling only")
        await self._return_earlier_process_tasks()
        listener = Listener(self.store, self.settings.serves, self._wake_from_thread)
        if self.settings.listen:
            listener.start()
        self._reporter.start()
        heartbeats = asyncio.create_task(self._heartbeats(), name="kubetasks-heartbeats")
        firing = asyncio.create_task(self._fire_schedules(), name="kubetasks-schedules")
        try:
            await self._claim_loop()
            await self._drain()
        finally:
            heartbeats.cancel()
            firing.cancel()
            listener.stop()
            await self._reporter.close()
        log.info("worker stopped")

    # -- claiming ----------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        while not self._stopping:
            self.health.loop_turned()
            self._wake.clear()  # before claiming: a NOTIFY during the claim must not be missed
            await self._sleep(await self._claim_into_free_slots())

    async def _claim_into_free_slots(self) -> float:
        """Claim and start up to the free slots; returns how long to sleep unless woken."""
        free = self._claimable()
        if free <= 0:
            return self.settings.poll_interval  # a finishing task wakes the loop
        queues = await self._queues()
        records = [] if not queues else await self._database(
            self.store.claim, queues, free, self.identity)
        if queues is None or records is None:
            return reconnect_delay(self._database_failures)
        if self._stopping and records:
            await self._database(self.store.release, [r.claim_id for r in records if r.claim_id])
            return 0.0
        for record in records:
            self._slots.start(record)
        self._claimed += len(records)
        self._finish_if_done(claimed_now=len(records))
        if len(records) == free:
            return self.settings.poll_interval
        next_run_after = await self._database(self.store.next_run_after, queues)
        return idle_wait(now=datetime.now(UTC), next_run_after=next_run_after,
                         poll_interval=self.settings.poll_interval)

    def _claimable(self) -> int:
        """Free slots, but no more than ``max_tasks`` leaves to claim."""
        if self.settings.max_tasks is None:
            return self._slots.free
        return min(self._slots.free, self.settings.max_tasks - self._claimed)

    async def _queues(self) -> list[str] | None:
        """The queues to claim from now: those given, or every queue with READY tasks but the
        excluded (None if the database could not say). That list is asked for at most every
        ``READY_QUEUES_SECONDS`` (a round trip before every claim cost a third of a busy
        worker's time); a NOTIFY adds the queue it names."""
        if self.settings.queues:
            return list(self.settings.queues)
        if self._ready_queues is not None and self._loop.time() < self._ready_queues_until:
            return self._ready_queues
        changes = self._ready_queues_changes
        found = await self._database(self.store.ready_queues,
                                     excluded=self.settings.exclude_queues)
        # Kept only if no NOTIFY or written retry changed the queues while the database was
        # asked: its answer may predate that change, and kept it would hide the queue until
        # the poll interval (a retry due in 1 s started after 5).
        if found is not None and changes == self._ready_queues_changes:
            self._ready_queues = found
            self._ready_queues_until = self._loop.time() + READY_QUEUES_SECONDS
        return found

    def _finish_if_done(self, *, claimed_now: int) -> None:
        max_tasks = self.settings.max_tasks
        if max_tasks is not None and self._claimed >= max_tasks:
            self._finish(f"{max_tasks} tasks claimed (max_tasks)")
        elif self.settings.exit_when_idle and not claimed_now and not self._slots.unsettled:
            self._finish("no task is due and none runs (exit when idle)")

    async def _sleep(self, seconds: float | None) -> None:
        """Until woken (a NOTIFY, a freed slot, a stop) or ``seconds`` (None: no limit)
        have passed."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()

    def _wake_from_thread(self, queue_name: str | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed: nothing left to wake
            self._loop.call_soon_threadsafe(self._notified, queue_name)

    def _retries_written(self) -> None:
        """Failed attempts were written: a retry now waits READY in a queue that the list of
        ready queues may not have had (its task was RUNNING). Ask again, and look now."""
        self._ready_queues_until = -math.inf
        self._ready_queues_changes += 1
        self._wake.set()

    def _notified(self, queue_name: str | None) -> None:
        """``queue_name`` got work (None: some queue may have): claim from it now, without
        first asking which queues have work (the NOTIFY just said)."""
        if queue_name is None or self._ready_queues is None:
            self._ready_queues_until = -math.inf
        elif queue_name not in self._ready_queues:
            self._ready_queues = [*self._ready_queues, queue_name]
        self._ready_queues_changes += 1
        self._wake.set()

    # -- schedules ---------------------------------------------------------------------

    async def _fire_schedules(self) -> None:
        """Register the schedules the imported modules declare, then fire the due ones of this
        worker's queues until it stops: schedules run without the operator too, and the
        database lets exactly one of any number of firers enqueue each tick."""
        declared = list(schedules.registry.values())
        while declared and await self._database(self.store.register_schedules, declared,
                                                 now=datetime.now(UTC)) is None:
            await asyncio.sleep(reconnect_delay(self._database_failures))
        queues = list(self.settings.queues) or None
        while True:
            await self._database(schedules.fire_due, self.store, queues)
            next_tick = await self._database(self.store.next_schedule_tick, queues)
            await asyncio.sleep(schedule_wait(now=datetime.now(UTC), next_tick=next_tick))

    # -- keeping claims ----------------------------------------------------------------

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_interval)
            claims = self._slots.claims()
            if not claims:
                continue
            kept = await self._database(self.store.keep_claims, claims)
            if kept is None:
                continue
            held, cancel_requested = kept
            for claim_id in cancel_requested:
                self._slots.cancel(claim_id)
            for claim_id in claims:
                running = self._slots.get(claim_id)
                if running is None or claim_id in held or running.claim_lost:
                    continue
                running.claim_lost = True
                self.metrics.claims_lost.labels(running.record.queue_name).inc()
                self._reporter.events.note(
                    "task.claim_lost", running.record, "claim taken away while the task runs (it "
                    "was put back as lost); its result will not be recorded")

    async def _return_earlier_process_tasks(self) -> None:
        """Put back what an earlier process of this pod held (its container restarted)."""
        if not self.settings.requeue_on_start:
            log.info("POD_UID is not set: not putting back tasks of earlier processes")
            return
        pod, nonce = self.identity.pod_uid, self.identity.nonce
        reason = f"the process running it in pod {self.identity.pod_name} ended (container restart)"
        returned = None
        while not self._stopping:
            returned = await self._database(self.store.requeue_pod, pod, reason=reason,
                                            max_lost=self.settings.max_lost, except_nonce=nonce)
            if returned is not None:
                break
            await self._sleep(reconnect_delay(self._database_failures))
        for task in returned or ():
            self.metrics.lost_returned.labels(task.queue_name).inc()
            self._reporter.events.lost_returned(task)

    # -- stopping ----------------------------------------------------------------------

    async def _drain(self) -> None:
        while self._slots.unsettled and not self._hurry:
            deadline = self._drain_deadline  # set by a signal, even one that comes meanwhile
            if deadline is not None:
                # Claimed ahead and not started: back at once, for another worker to run.
                await self._put_back(self._slots.take_waiting())
            left = None if deadline is None else deadline - self._loop.time()
            if left is not None and left <= 0:
                break
            self._wake.clear()
            await self._sleep(left)
        await self._put_back(self._slots.take_unsettled())

    async def _put_back(self, unfinished: list[Running]) -> None:
        if not unfinished:
            return
        claims = [r.record.claim_id for r in unfinished if r.record.claim_id is not None]
        if await self._database(self.store.release, claims) is None:
            log.error("could not put back %d unfinished tasks; they stay RUNNING until the "
                      "operator puts them back as lost", len(claims))
            return
        for running in unfinished:
            self.metrics.released.labels(running.record.queue_name).inc()
            self._reporter.events.note("task.released", running.record,
                                       "put back unfinished at shutdown, no attempt counted")

    # -- the database ------------------------------------------------------------------

    async def _database(self, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T | None:
        """Run a store call on a thread. If the database cannot be reached, or lacks the schema,
        log it, report not ready, and return None: the caller tries again later."""
        try:
            value = await asyncio.to_thread(call, *args, **kwargs)
        except DATABASE_AWAY as error:
            self._database_failures += 1
            self.health.database_ok = False
            log.warning("database unreachable (%s): %s", getattr(call, "__name__", call), error)
            return None
        except SCHEMA_MISSING as error:
            self._database_failures += 1
            self.health.database_ok = False
            log.error("the database lacks the kubetasks schema, or has an older one (%s); run "
                      "`kubetasks migrate` against it. Trying again", str(error).strip())
            return None
        if self._database_failures or not self.health.database_ok:
            self._database_failures = 0
            self.health.database_ok = True
        return value

