"""The kopf entry points: reconcile the worker Deployment, start each queue's loop
(``daemon``), and put back the tasks of worker pods that died. Handlers parse, call pure
functions, and apply."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import kopf

from kubetasks.logs import redact
from kubetasks_operator import peering, queue_metrics
from kubetasks_operator.controller import condition, utcnow
from kubetasks_operator.daemon import apply_worker_deployment, run_queue_loop
from kubetasks_operator.kube import ApiException, Kube, SecretMissing, load_config
from kubetasks_operator.lost import pod_loss, restart_count
from kubetasks_operator.objects import DeploymentRefused
from kubetasks_operator.runtime import Runtime
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
    settings.posting.reporting_component = "kubetasks-operator"  # Events show who posted them
    settings.watching.server_timeout = 300
    await asyncio.to_thread(load_config)
    # kubetasks-operator read the settings before starting kopf; `kopf run` reads them here.
    operator_settings = memo.get("settings") or OperatorSettings.from_env()
    settings.peering.priority = peering.priority(time.time_ns())  # the older replica leads
    settings.peering.lifetime = operator_settings.peering_lifetime
    memo[RUNTIME_KEY] = runtime = Runtime(kube=Kube(), listen=operator_settings.listen)
    if operator_settings.peering:
        await asyncio.to_thread(runtime.kube.ensure_peering, operator_settings.peering,
                                operator_settings.namespaces)
        log.info("electing a leader", extra={"peering": operator_settings.peering,
                                             "priority": settings.peering.priority})


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
        await asyncio.to_thread(_report_not_reconciled, runtime, body, "InvalidSpec", str(error))
        raise kopf.PermanentError(f"invalid spec: {error}") from None
    ref = parsed.database.secret_ref
    try:
        conninfo = await asyncio.to_thread(runtime.kube.secret_value, namespace, ref.name, ref.key)
    except SecretMissing as error:
        await asyncio.to_thread(_report_not_reconciled, runtime, body, "DatabaseSecretMissing",
                                str(error))
        raise kopf.TemporaryError(f"{error}; retrying", delay=10) from None
    controller = runtime.controller(body, parsed, conninfo)
    controller.fields["observedGeneration"] = meta.get("generation")
    try:
        await asyncio.to_thread(apply_worker_deployment, controller, body)
    except DeploymentRefused as error:  # reported on the TaskQueue; the daemon tries again
        raise kopf.TemporaryError(redact(str(error)), delay=30) from None
    except ApiException as error:  # the API server busy or restarting: soon, not in a minute
        raise kopf.TemporaryError(
            f"applying the worker Deployment failed ({error.status} {error.reason}); retrying",
            delay=5) from None


def _report_not_reconciled(runtime: Runtime, body: kopf.Body, reason: str, message: str) -> None:
    """``Reconciled`` (and so ``Ready``) False for ``reason``, and a Warning Event."""
    meta = body["metadata"]
    queue_metrics.count_error(meta["namespace"], meta["name"], "reconcile")
    message = redact(message)
    controller = runtime.controllers.get((meta["namespace"], meta["name"]))
    if controller is not None:  # its status writes carry all conditions: go through it
        controller.report_failure("Reconciled", reason, message)
        controller.write_status(utcnow())
        return
    kopf.warn(body, reason=reason, message=message)
    runtime.kube.patch_status(meta["namespace"], meta["name"], {"conditions": [
        condition("Reconciled", False, reason, message, utcnow()),
        condition("Ready", False, reason, message, utcnow())]})


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


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=5.0, backoff=5)
async def scale(stopped: kopf.DaemonStopped, namespace: str | None, name: str, body: kopf.Body,
                memo: kopf.Memo, **kwargs: Any) -> None:
    """The queue's control loop (``daemon.run_queue_loop``). It never ends on an error: each is
    reported (condition, Event) and the next step tries again."""
    pods_index: kopf.Index[tuple[str, str], tuple[str, str]] = kwargs["worker_pods"]
    assert namespace is not None
    queue_namespace: str = namespace
    await run_queue_loop(memo[RUNTIME_KEY], (queue_namespace, name), body, stopped,
                         lambda: live_pods(pods_index, queue_namespace, name))


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
        queue_metrics.REQUEUED.labels(controller.namespace, controller.name, "pod").inc(len(moved))
        failed = [t.task_id for t in moved if t.state == "FAILED"]
        message = f"{loss.reason}: put back {len(moved) - len(failed)} task(s)"
        if failed:
            message += f", failed {len(failed)} lost more than maxLost times ({failed[:10]})"
        controller.post_event("Warning", "TasksRequeued", message)
        log.warning("requeued lost tasks", extra={"taskqueue": controller.name, "pod": loss.pod_name,
                                                  "tasks": [t.task_id for t in moved]})
