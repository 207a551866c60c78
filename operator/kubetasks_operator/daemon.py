"""The per-queue loop behind the ``scale`` kopf daemon: a controller step every poll interval,
or at once when a NOTIFY says the queue got work; a sweep when it is due; the database Secret
followed; and every error turned into a condition and an Event, never the end of the loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import timedelta

import kopf

from kubetasks.logs import redact
from kubetasks.store import SCHEMA_MISSING, DatabaseError
from kubetasks_operator import queue_metrics
from kubetasks_operator.controller import DeploymentMissing, QueueController, QueueStore, utcnow
from kubetasks_operator.kube import ApiException, SecretMissing
from kubetasks_operator.objects import DeploymentRefused, database_fingerprint, worker_deployment
from kubetasks_operator.runtime import Key, Runtime
from kubetasks_operator.sweeper import sweep

log = logging.getLogger(__name__)


async def run_queue_loop(runtime: Runtime, key: Key, body: kopf.Body, stopped: kopf.DaemonStopped,
                         live_pods: Callable[[], dict[str, str]]) -> None:
    """Until ``stopped``: wait for the reconcile handler to make the queue's controller, then
    step it. ``live_pods`` reads the index of the queue's live worker pods (uid -> name)."""
    controller = await _wait_for_controller(runtime, key, stopped)
    if controller is None:
        return
    wake = asyncio.Event()
    wakeup = WakeUp(runtime, wake)
    loop = QueueLoop()
    try:
        while not stopped:
            # Cleared before the step, so that a NOTIFY arriving during it wakes the next one.
            woken = wake.is_set()
            wake.clear()
            controller = runtime.controllers.get(key, controller)
            # Woken by a NOTIFY: this queue got work, read it now; else a reading shared with
            # the database's other TaskQueues will do while it is younger than a poll.
            controller.statistics_max_age = (
                0.0 if woken else controller.spec.scaling.poll_interval_seconds)
            try:
                if loop.sweep_due():
                    controller = await _follow_secret(runtime, controller, body)
                wakeup.follow(controller)  # the database or the queue name may have changed
                await loop.run_once(controller, body, live_pods())
            except Exception:  # run_once reports its own; this keeps the loop alive whatever
                log.exception("queue loop step failed", extra={"taskqueue": controller.name})
            await _pause(wake, stopped, controller.spec.scaling.poll_interval_seconds)
    finally:
        wakeup.follow(None)
        if stopped:
            runtime.controllers.pop(key, None)
        if stopped.reason and stopped.reason & kopf.DaemonStoppingReason.RESOURCE_DELETED:
            await _forget_schedules(controller)


def apply_worker_deployment(controller: QueueController, body: kopf.Body) -> None:
    """Create or update the TaskQueue's worker Deployment (owned by it), and say so in status:
    ``Reconciled``, with a Warning Event naming the cause when the API server refuses it."""
    deployment = worker_deployment(controller.spec, taskqueue_name=controller.name,
                                   namespace=controller.namespace,
                                   replicas=controller.spec.scaling.min_replicas,
                                   database=database_fingerprint(controller.store.conninfo))
    kopf.adopt(deployment, owner=body)
    try:
        outcome = controller.kube.apply_deployment(deployment)
    except (DeploymentRefused, ApiException) as error:
        queue_metrics.count_error(controller.namespace, controller.name, "reconcile")
        if isinstance(error, ApiException):
            raise
        controller.report_failure("Reconciled", "DeploymentRefused", str(error))
        with contextlib.suppress(Exception):  # the status is best effort while failing
            controller.write_status(utcnow())
        raise
    controller.set_condition("Reconciled", True, "Applied", f"Deployment {controller.deployment} {outcome}")
    controller.write_status(utcnow())
    log.info("reconciled", extra={"taskqueue": controller.name, "deployment": controller.deployment,
                                  "outcome": outcome})


async def _follow_secret(runtime: Runtime, controller: QueueController,
                         body: kopf.Body) -> QueueController:
    """Re-read the database Secret (a rotated password): on a change, use the new URL and roll
    the worker pods so that they start with it."""
    ref = controller.spec.database.secret_ref
    try:
        conninfo = await asyncio.to_thread(runtime.kube.secret_value, controller.namespace,
                                           ref.name, ref.key)
    except SecretMissing as error:  # scaling goes on with the URL we have; new pods cannot start
        controller.report_failure("Reconciled", "DatabaseSecretMissing",
                                  f"{error}: new worker pods cannot start")
        await asyncio.to_thread(controller.write_status, utcnow())
        return controller
    except Exception:  # the API is away: keep the URL we have
        return controller
    if conninfo == controller.store.conninfo:
        if controller.condition_reason("Reconciled") == "DatabaseSecretMissing":  # it is back
            await asyncio.to_thread(apply_worker_deployment, controller, body)
        return controller
    changed = runtime.controller(body, controller.spec, conninfo)
    changed.post_event("Normal", "DatabaseSecretChanged",
                       f"Secret {ref.name} changed: using the new URL and rolling the worker pods")
    await asyncio.to_thread(apply_worker_deployment, changed, body)
    return changed


async def _forget_schedules(controller: QueueController) -> None:
    """The TaskQueue was deleted: its ``spec.schedules`` stop firing (a database that cannot be
    reached now keeps them, to be deleted with ``kubetasks schedules --delete``)."""
    try:
        await asyncio.to_thread(controller.store.register_schedules, [], now=utcnow(),
                                replace_source=controller.schedule_source)
    except DatabaseError as error:
        log.warning("could not delete the schedules of a deleted TaskQueue: %s", redact(str(error)),
                    extra={"taskqueue": controller.name})


async def _pause(wake: asyncio.Event, stopped: kopf.DaemonStopped, seconds: float) -> None:
    """Until a NOTIFY wakes the loop, the daemon is stopped, or ``seconds`` have passed."""
    waiters = {asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stopped.wait(seconds))}
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


class WakeUp:
    """Keeps the daemon's wake event subscribed to its controller's database and queue."""

    def __init__(self, runtime: Runtime, wake: asyncio.Event) -> None:
        self.runtime, self.wake = runtime, wake
        self.current: tuple[str, str] | None = None

    def follow(self, controller: QueueController | None) -> None:
        wanted = (controller.store.conninfo, controller.queue_name) if controller else None
        if wanted == self.current or not self.runtime.listen:
            return
        if self.current is not None:
            self.runtime.notifier(self.current[0]).unsubscribe(self.current[1], self.wake)
        if wanted is not None:
            self.runtime.notifier(wanted[0]).subscribe(wanted[1], self.wake)
        self.current = wanted


class QueueLoop:
    """One step and, when due, a sweep; errors become conditions and Events on transitions."""

    def __init__(self) -> None:
        self.next_sweep = utcnow()
        self.failing: str | None = None  # the kind of the last error, while it lasts

    def sweep_due(self) -> bool:
        return utcnow() >= self.next_sweep

    async def run_once(self, controller: QueueController, body: kopf.Body,
                       pods: dict[str, str]) -> None:
        try:
            try:
                # Before the step, so that the step sees (and scales up for) what they enqueued.
                await asyncio.to_thread(controller.run_schedules, utcnow())
                await asyncio.to_thread(controller.step, utcnow(), pods)
            except DeploymentMissing as error:
                # Made again (or refused, with the cause) before the next step.
                await asyncio.to_thread(apply_worker_deployment, controller, body)
                if controller.condition_reason("Reconciled") is None:
                    controller.post_event("Warning", "DeploymentMissing", f"{error}; made it again")
                return
            if self.sweep_due():
                await asyncio.to_thread(sweep, controller, pods)
                interval = controller.spec.lost_tasks.sweep_interval_seconds
                self.next_sweep = utcnow() + timedelta(seconds=interval)
        except DeploymentRefused:
            self.failing = "DeploymentRefused"  # apply_worker_deployment reported (and counted) it
        except SCHEMA_MISSING as error:
            queue_metrics.count_error(controller.namespace, controller.name, "database")
            await self.failed(controller, "SchemaMissing", "DatabaseReachable", schema_problem(error))
        except DatabaseError as error:
            queue_metrics.count_error(controller.namespace, controller.name, "database")
            message = await asyncio.to_thread(database_problem, controller.store, error)
            await self.failed(controller, "DatabaseUnreachable", "DatabaseReachable", message)
        except Exception as error:  # the API server restarting, throttling, ...: try again
            queue_metrics.count_error(controller.namespace, controller.name,
                                      "kubernetes_api" if isinstance(error, ApiException) else "other")
            log.exception("scaling step failed", extra={"taskqueue": controller.name})
            await self.failed(controller, "ScalingFailed", "Scaling",
                              str(error).strip() or type(error).__name__)
        else:
            if self.failing in ("DatabaseUnreachable", "SchemaMissing"):
                controller.post_event("Normal", "DatabaseReachable", "the database answers again")
            self.failing = None

    async def failed(self, controller: QueueController, reason: str, condition: str,
                     message: str) -> None:
        self.failing = reason
        controller.report_failure(condition, reason, message)
        with contextlib.suppress(Exception):  # the status is best effort while failing
            await asyncio.to_thread(controller.write_status, utcnow())


def schema_problem(error: BaseException) -> str:
    """The database answers but lacks the kubetasks schema, or has an older one: say what to
    run, as the worker and the CLI do."""
    first_line = (str(error).strip() or type(error).__name__).splitlines()[0]
    return redact(f"the database lacks the kubetasks schema, or has an older one ({first_line}): "
                  "run `kubetasks migrate` against it, or install the chart with "
                  "migrations.enabled=true; the operator tries again meanwhile")


def database_problem(store: QueueStore, error: Exception) -> str:
    """What is wrong with the database, in libpq's words, which name the host: a pool only
    says it waited in vain, so a connection of its own is tried for the reason."""
    try:
        store.connect().close()
    except DatabaseError as cause:
        return redact(f"cannot connect to the database: {cause}".strip())
    except Exception:  # the original error says enough then
        pass
    return redact(str(error).strip() or type(error).__name__)


async def _wait_for_controller(runtime: Runtime, key: tuple[str, str],
                               stopped: kopf.DaemonStopped) -> QueueController | None:
    """The reconcile handler makes the controller once the database Secret is readable."""
    while not stopped:
        if key in runtime.controllers:
            return runtime.controllers[key]
        await asyncio.sleep(0.5)
    return None
