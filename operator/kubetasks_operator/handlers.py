"""kopf handlers: reconcile the worker Deployment, run each queue's scaler, and put back the
tasks of worker pods that died. Handlers parse, call pure functions, and apply."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta
from typing import Any

import kopf

from kubetasks.store import DatabaseError
from kubetasks_operator import metrics
from kubetasks_operator.kube import ApiException, Kube, SecretMissing, load_config
from kubetasks_operator.lost import pod_loss, restart_count
from kubetasks_operator.objects import database_fingerprint, worker_deployment
from kubetasks_operator.runtime import Runtime
from kubetasks_operator.scaler import DeploymentMissing, QueueController, condition, utcnow
from kubetasks_operator.settings import OperatorSettings
from kubetasks_operator.spec import (
    GROUP,
    MANAGED_BY,
    PLURAL,
    TASKQUEUE_LABEL,
    VERSION,
    InvalidSpec,
    parse_spec,
)

log = logging.getLogger(__name__)
RUNTIME_KEY = "kubetasks"


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # Progress in annotations only: the CRD's structural schema prunes unknown status fields.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="kubetasks.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="kubetasks.io", key="last-handled-configuration")
    settings.persistence.finalizer = "kubetasks.io/operator"
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = 300
    await asyncio.to_thread(load_config)
    # kubetasks-operator read the settings before starting kopf; `kopf run` reads them here.
    operator_settings = memo.get("settings") or OperatorSettings.from_env()
    memo[RUNTIME_KEY] = Runtime(kube=Kube(), listen=operator_settings.listen)


@kopf.on.cleanup()
async def close(memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime = memo[RUNTIME_KEY]
    for notifier in runtime.notifiers.values():
        await notifier.close()
    runtime.close()


@kopf.on.probe(id="taskqueues")
def probe_taskqueues(memo: kopf.Memo, **_: Any) -> int:
    return len(memo[RUNTIME_KEY].controllers)


@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
@kopf.on.resume(GROUP, VERSION, PLURAL)
async def reconcile(*, body: kopf.Body, spec: kopf.Spec, meta: kopf.Meta, name: str,
                    namespace: str | None, memo: kopf.Memo, **_: Any) -> None:
    """Build the worker Deployment from the spec and apply it; keep the live replica count."""
    runtime: Runtime = memo[RUNTIME_KEY]
    assert namespace is not None  # TaskQueue is namespaced
    try:
        parsed = parse_spec(spec)
    except InvalidSpec as error:
        kopf.warn(body, reason="InvalidSpec", message=str(error))
        raise kopf.PermanentError(f"invalid spec: {error}") from None
    ref = parsed.database.secret_ref
    try:
        conninfo = await asyncio.to_thread(runtime.kube.secret_value, namespace, ref.name, ref.key)
    except SecretMissing as error:
        await asyncio.to_thread(_report_missing_secret, runtime, body, str(error))
        raise kopf.TemporaryError(f"{error}; retrying", delay=10) from None
    controller = runtime.controller(body, parsed, conninfo)
    controller.fields["observedGeneration"] = meta.get("generation")
    try:
        await asyncio.to_thread(apply_worker_deployment, controller, body)
    except ApiException as error:  # the API server busy or restarting: soon, not in a minute
        raise kopf.TemporaryError(
            f"applying the worker Deployment failed ({error.status} {error.reason}); retrying",
            delay=5) from None


def apply_worker_deployment(controller: QueueController, body: kopf.Body) -> None:
    """Create or update the TaskQueue's worker Deployment (owned by it), and say so in status."""
    deployment = worker_deployment(controller.spec, taskqueue_name=controller.name,
                                   namespace=controller.namespace,
                                   replicas=controller.spec.scaling.min_replicas,
                                   database=database_fingerprint(controller.store.conninfo))
    kopf.adopt(deployment, owner=body)
    outcome = controller.kube.apply_deployment(deployment)
    controller.set_condition("Ready", True, "Reconciled", f"Deployment {controller.deployment} {outcome}")
    controller.write_status(utcnow())
    log.info("reconciled", extra={"taskqueue": controller.name, "deployment": controller.deployment,
                                  "outcome": outcome})


def _report_missing_secret(runtime: Runtime, body: kopf.Body, message: str) -> None:
    meta = body["metadata"]
    kopf.warn(body, reason="DatabaseSecretMissing", message=message)
    controller = runtime.controllers.get((meta["namespace"], meta["name"]))
    if controller is not None:  # its status writes carry all conditions: go through it
        controller.set_condition("Ready", False, "DatabaseSecretMissing", message)
        controller.write_status(utcnow())
        return
    runtime.kube.patch_status(meta["namespace"], meta["name"], {"conditions": [
        condition("Ready", False, "DatabaseSecretMissing", message, utcnow())]})


@kopf.index("pods", labels=MANAGED_BY)
def worker_pods(namespace: str | None, name: str, uid: str, labels: kopf.Labels,
                status: kopf.Status, **_: Any) -> dict[tuple[str, str], tuple[str, str]]:
    """Live worker pods by (namespace, TaskQueue): (uid, name). Ended pods are not live."""
    if status.get("phase") in ("Failed", "Succeeded") or TASKQUEUE_LABEL not in labels or not namespace:
        return {}
    return {(namespace, labels[TASKQUEUE_LABEL]): (uid, name)}


def live_pods(index: kopf.Index[tuple[str, str], tuple[str, str]], namespace: str,
              name: str) -> dict[str, str]:
    return dict(index.get((namespace, name), []))


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=5.0)
async def scale(stopped: kopf.DaemonStopped, namespace: str | None, name: str, body: kopf.Body,
                memo: kopf.Memo, **kwargs: Any) -> None:
    """The queue's control loop: a step every poll interval, or at once on NOTIFY. It never
    ends on an error: each is reported (condition, Event) and the next step tries again."""
    runtime: Runtime = memo[RUNTIME_KEY]
    pods_index: kopf.Index[tuple[str, str], tuple[str, str]] = kwargs["worker_pods"]
    assert namespace is not None
    controller = await _wait_for_controller(runtime, (namespace, name), stopped)
    if controller is None:
        return
    wake = asyncio.Event()
    wakeup = WakeUp(runtime, wake)
    loop = ScaleLoop()
    try:
        while not stopped:
            # Cleared before the step, so that a NOTIFY arriving during it wakes the next one.
            wake.clear()
            controller = runtime.controllers.get((namespace, name), controller)
            if loop.sweep_due():
                controller = await _follow_secret(runtime, controller, body)
            wakeup.follow(controller)  # the database or the queue name may have changed
            await loop.run_once(controller, body, live_pods(pods_index, namespace, name))
            await _pause(wake, stopped, controller.spec.scaling.poll_interval_seconds)
    finally:
        wakeup.follow(None)
        if stopped:
            runtime.controllers.pop((namespace, name), None)


async def _follow_secret(runtime: Runtime, controller: QueueController,
                         body: kopf.Body) -> QueueController:
    """Re-read the database Secret (a rotated password): on a change, use the new URL and roll
    the worker pods so that they start with it."""
    ref = controller.spec.database.secret_ref
    try:
        conninfo = await asyncio.to_thread(runtime.kube.secret_value, controller.namespace,
                                           ref.name, ref.key)
    except Exception:  # missing now, or the API is away: keep the URL we have
        return controller
    if conninfo == controller.store.conninfo:
        return controller
    changed = runtime.controller(body, controller.spec, conninfo)
    changed.post_event("Normal", "DatabaseSecretChanged",
                       f"Secret {ref.name} changed: using the new URL and rolling the worker pods")
    await asyncio.to_thread(apply_worker_deployment, changed, body)
    return changed


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


class ScaleLoop:
    """One step and, when due, a sweep; errors become conditions and Events on transitions."""

    def __init__(self) -> None:
        self.next_sweep = utcnow()
        self.failing: str | None = None  # the kind of the last error, while it lasts

    def sweep_due(self) -> bool:
        return utcnow() >= self.next_sweep

    async def run_once(self, controller: QueueController, body: kopf.Body,
                       pods: dict[str, str]) -> None:
        try:
            await asyncio.to_thread(controller.step, utcnow(), pods)
            if self.sweep_due():
                await asyncio.to_thread(controller.sweep, pods)
                interval = controller.spec.lost_tasks.sweep_interval_seconds
                self.next_sweep = utcnow() + timedelta(seconds=interval)
        except DeploymentMissing as error:
            controller.post_event("Warning", "DeploymentMissing", f"{error}; creating it again")
            await asyncio.to_thread(apply_worker_deployment, controller, body)
        except DatabaseError as error:
            await self.failed(controller, "DatabaseUnreachable", "DatabaseReachable", error)
        except Exception as error:  # the API server restarting, throttling, ...: try again
            log.exception("scaling step failed", extra={"taskqueue": controller.name})
            await self.failed(controller, "ScalingFailed", "Scaling", error)
        else:
            if self.failing == "DatabaseUnreachable":
                controller.post_event("Normal", "DatabaseReachable", "the database answers again")
            self.failing = None

    async def failed(self, controller: QueueController, reason: str, condition: str,
                     error: Exception) -> None:
        message = str(error).strip() or type(error).__name__
        if self.failing != reason:
            controller.post_event("Warning", reason, message)
        self.failing = reason
        controller.set_condition(condition, False, reason, message)
        with contextlib.suppress(Exception):  # the status is best effort while failing
            await asyncio.to_thread(controller.write_status, utcnow())


async def _wait_for_controller(runtime: Runtime, key: tuple[str, str],
                               stopped: kopf.DaemonStopped) -> QueueController | None:
    """The reconcile handler makes the controller once the database Secret is readable."""
    while not stopped:
        if key in runtime.controllers:
            return runtime.controllers[key]
        await asyncio.sleep(0.5)
    return None


@kopf.on.event("pods", labels=MANAGED_BY)
async def pod_event(event: kopf.RawEvent, body: kopf.Body, labels: kopf.Labels,
                    namespace: str | None, memo: kopf.Memo, **_: Any) -> None:
    """Put back at once the tasks of a worker pod that was deleted, failed, or restarted."""
    runtime: Runtime = memo[RUNTIME_KEY]
    controller = runtime.controllers.get((namespace or "", labels.get(TASKQUEUE_LABEL, "")))
    uid = body["metadata"]["uid"]
    previous = runtime.restarts.get(uid)
    loss = pod_loss(event.get("type"), body, previous)
    if event.get("type") == "DELETED":
        runtime.restarts.pop(uid, None)
    else:
        runtime.restarts[uid] = restart_count(body)
    if loss is None or controller is None:
        return
    moved = await asyncio.to_thread(
        controller.store.requeue_pod, loss.pod_uid, reason=loss.reason,
        max_lost=controller.spec.lost_tasks.max_lost, claimed_before=loss.claimed_before)
    if moved:
        metrics.REQUEUED.labels(controller.namespace, controller.name, "pod").inc(len(moved))
        failed = [t.task_id for t in moved if t.state == "FAILED"]
        message = f"{loss.reason}: put back {len(moved) - len(failed)} task(s)"
        if failed:
            message += f", failed {len(failed)} lost more than maxLost times ({failed[:10]})"
        controller.post_event("Warning", "TasksRequeued", message)
        log.warning("requeued lost tasks", extra={"taskqueue": controller.name, "pod": loss.pod_name,
                                                  "tasks": [t.task_id for t in moved]})
