"""kubetasks on real pods: the example application's image, the operator from the chart.

Every worker here is a container of ``kubetasks/example-app:dev`` run by a real kubelet and
containerd, with real cgroups, probes, signals, and a ReplicaSet choosing whom to remove.
Tasks come from ``examples/app/tasks.py``; the TaskQueues are applied with ``kubectl apply``.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
import yaml
from app import tasks  # examples/app, as the image has it
from localcluster.operator import Cluster
from localcluster.polling import wait_until
from localcluster.stack import APP_IMAGE, APP_IMAGE_NEXT, OPERATOR_NAMESPACE, Stack

from kubetasks import TaskResult, TaskResultStatus
from kubetasks.backends import PostgresBackend

from .conftest import Database
from .queues import apply_taskqueue, states

pytestmark = pytest.mark.e2e
SUCCESSFUL = TaskResultStatus.SUCCESSFUL


def result(backend: PostgresBackend, task: TaskResult[Any]) -> TaskResult[Any]:
    return backend.get_result(task.id)


def running_on(backend: PostgresBackend, task: TaskResult[Any]) -> str | None:
    """The pod running ``task`` now, or None."""
    current = result(backend, task)
    if current.status != TaskResultStatus.RUNNING or not current.worker_ids:
        return None
    return current.worker_ids[-1].split("/")[0]


def finished(backend: PostgresBackend, task: TaskResult[Any]) -> TaskResult[Any] | None:
    current = result(backend, task)
    return current if current.is_finished else None


# -- the scenarios -------------------------------------------------------------------------


def test_an_app_pod_enqueues_and_workers_scale_from_zero_and_back(
        e2e: Stack, namespace: str, cluster: Cluster, db: Database) -> None:
    # The example app's make_thumbnail goes to the queue "media".
    apply_taskqueue(e2e, namespace, "media", max_replicas=3, backlogDrainSeconds=5)
    wait_until(lambda: cluster.replicas("media") == 0, timeout=60, what="the worker Deployment at 0")

    # The application enqueues from inside the cluster, through the client library.
    e2e.kubectl("apply", "-f", "-", input=yaml.safe_dump({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "enqueue", "namespace": namespace},
        "spec": {"restartPolicy": "Never", "containers": [{
            "name": "enqueue", "image": APP_IMAGE, "imagePullPolicy": "IfNotPresent",
            "command": ["python", "-m", "app.enqueue", "300", "--quiet"],
            "env": [{"name": "KUBETASKS_DATABASE_URL",
                     "valueFrom": {"secretKeyRef": {"name": "db", "key": "url"}}}]}]}}))
    wait_until(lambda: cluster.core.read_namespaced_pod("enqueue", namespace).status.phase == "Succeeded",
               timeout=120, what="the app pod's enqueue")
    assert sum(states(db).values()) == 300
    # `kubectl logs` reaches the real kubelet, which authorises the API server by its certificate.
    assert "enqueued 300 make_thumbnail tasks" in e2e.kubectl("logs", "enqueue", "-n", namespace).stdout

    peak = 0

    def drained() -> bool:
        nonlocal peak
        peak = max(peak, cluster.replicas("media") or 0)
        return states(db) == {"SUCCESSFUL": 300}

    wait_until(drained, timeout=240, interval=0.5, what="300 tasks done")
    with psycopg.connect(db.local) as conn:
        pods = {row[0] for row in conn.execute("SELECT DISTINCT worker_pod FROM kubetasks_tasks")}
    assert peak >= 2, f"the backlog never asked for more than {peak} worker"
    assert all(pod.startswith("media-worker-") for pod in pods), pods
    wait_until(lambda: cluster.replicas("media") == 0, timeout=90, what="scale to zero once idle")
    wait_until(lambda: not cluster.pods("media"), timeout=60, what="the worker pods gone")
    print(f"scaled 0 -> {peak} -> 0; {len(pods)} pods ran the 300 tasks")


def test_tight_deadlines_get_more_replicas_than_the_same_backlog(
        e2e: Stack, namespace: str, cluster: Cluster, backend: PostgresBackend) -> None:
    # An image the node does not have and may not pull: no pod ever starts, the backlog stays,
    # and the two decisions are compared on equal terms.
    for name in ("plain", "urgent"):
        apply_taskqueue(e2e, namespace, name, image="kubetasks/absent:1", pull_policy="Never",
                        max_replicas=10)
    # 80 s of work: the plain queue may take a minute (one pod), the urgent one has 12 s.
    tasks.render_report.using(backend=backend, queue_name="plain").enqueue_many([(1,)] * 80)
    soon = datetime.now(UTC) + timedelta(seconds=12)
    urgent_reports = tasks.render_report.using(backend=backend, queue_name="urgent", expected_at=soon)
    urgent_reports.enqueue_many([(1,)] * 80)
    plain = wait_until(lambda: cluster.status("plain").get("desiredReplicas"), timeout=60,
                       what="plain decided")
    urgent = wait_until(lambda: cluster.status("urgent").get("desiredReplicas"), timeout=60,
                        what="urgent decided")
    assert urgent > plain, (cluster.status("plain")["reason"], cluster.status("urgent")["reason"])
    assert cluster.status("urgent")["reason"].startswith("deadline:")
    def waiting_reasons() -> set[str]:
        return {s["state"]["waiting"]["reason"] for p in cluster.pods("urgent")
                for s in p.get("status", {}).get("containerStatuses", []) if "waiting" in s["state"]}

    wait_until(lambda: waiting_reasons() == {"ErrImageNeverPull"}, timeout=60,
               what="the kubelet refusing the absent image")


def test_a_deleted_busy_pods_task_comes_back_and_another_pod_finishes_it(
        e2e: Stack, namespace: str, cluster: Cluster, backend: PostgresBackend) -> None:
    apply_taskqueue(e2e, namespace, "lost", min_replicas=2, max_replicas=2, concurrency=1)
    wait_until(lambda: len([p for p in cluster.running_pods("lost") if _ready(p)]) == 2, timeout=120,
               what="two ready worker pods")
    report = tasks.render_report.using(backend=backend, queue_name="lost").enqueue(4)
    victim = wait_until(lambda: running_on(backend, report), timeout=60, interval=0.1,
                        what="the task running")
    deleted_at = time.monotonic()
    e2e.kubectl("delete", "pod", victim, "-n", namespace, "--grace-period=0", "--force", "--wait=false")
    wait_until(lambda: result(backend, report).lost_count == 1, timeout=30, interval=0.1,
               what="the task back")
    back_after = time.monotonic() - deleted_at
    done = wait_until(lambda: finished(backend, report), timeout=90, what="the task finished")
    assert done.status == SUCCESSFUL
    assert done.return_value != victim and done.return_value.startswith("lost-worker-")
    assert back_after < 15, f"put back {back_after:.1f}s after the delete"
    print(f"task back {back_after:.2f}s after kubectl delete pod; finished by {done.return_value}")


def test_a_task_whose_worker_is_oom_killed_is_put_back_then_fails_past_max_lost(
        e2e: Stack, namespace: str, cluster: Cluster, backend: PostgresBackend) -> None:
    apply_taskqueue(e2e, namespace, "hungry", min_replicas=1, max_replicas=1, concurrency=1,
                    memory="160Mi", max_lost=1)
    dataset = tasks.load_dataset.using(backend=backend, queue_name="hungry").enqueue(600)
    done = wait_until(lambda: finished(backend, dataset), timeout=240, interval=0.5,
                      what="the task failing after its worker was OOM-killed twice")
    assert done.status == TaskResultStatus.FAILED
    assert done.lost_count == 2
    assert "more than maxLost=1" in done.errors[-1].message, done.errors
    # The kubelet counts a restart when the container starts again, after its back-off: the
    # task may be FAILED (two kills) while the count still says 1.
    status = wait_until(
        lambda: (s := cluster.pods("hungry")[0]["status"]["containerStatuses"][0])["restartCount"] >= 2 and s,
        timeout=60, what="the second restart counted")
    assert status["restartCount"] >= 2
    assert status["lastState"]["terminated"]["reason"] == "OOMKilled"
    # The worker goes on with the next task once the hungry one is gone.
    thumb = tasks.make_thumbnail.using(backend=backend, queue_name="hungry").enqueue(1)
    next_done = wait_until(lambda: finished(backend, thumb), timeout=120, what="the next task")
    assert next_done.status == SUCCESSFUL


def test_scale_in_keeps_the_pod_with_the_long_task(
        e2e: Stack, namespace: str, cluster: Cluster, backend: PostgresBackend) -> None:
    apply_taskqueue(e2e, namespace, "mixed", max_replicas=3, concurrency=1, backlogDrainSeconds=0)
    slow = tasks.render_report.using(backend=backend, queue_name="mixed", priority=10).enqueue(45)
    tasks.make_thumbnail.using(backend=backend, queue_name="mixed").enqueue_many([(i,) for i in range(60)])
    wait_until(lambda: cluster.replicas("mixed") == 3, timeout=60, what="a burst of 3 pods")
    busy = wait_until(lambda: running_on(backend, slow), timeout=120, what="the long task running")
    wait_until(lambda: cluster.replicas("mixed") == 1, timeout=120, what="scale-in to one pod")
    wait_until(lambda: [p["metadata"]["name"] for p in cluster.pods("mixed")] == [busy], timeout=90,
               what="only the busy pod left")
    done = wait_until(lambda: finished(backend, slow), timeout=90, what="the long task finished")
    assert done.status == SUCCESSFUL and done.return_value == busy and done.lost_count == 0


def test_sigterm_drains_the_running_task_within_the_grace_period(
        e2e: Stack, namespace: str, cluster: Cluster, backend: PostgresBackend) -> None:
    apply_taskqueue(e2e, namespace, "drain", min_replicas=1, max_replicas=1, concurrency=1, grace=20)
    report = tasks.render_report.using(backend=backend, queue_name="drain").enqueue(6)
    victim = wait_until(lambda: running_on(backend, report), timeout=120, interval=0.1,
                        what="the task running")
    deleted_at = time.monotonic()
    e2e.kubectl("delete", "pod", victim, "-n", namespace, "--wait=true", timeout=60)
    gone_after = time.monotonic() - deleted_at
    done = wait_until(lambda: finished(backend, report), timeout=30, what="the task finished")
    assert done.status == SUCCESSFUL and done.return_value == victim
    assert done.lost_count == 0 and done.attempts == 1
    assert gone_after < 20, f"the pod took {gone_after:.1f}s to stop"
    print(f"pod drained and gone {gone_after:.1f}s after kubectl delete (grace 20s)")


def test_a_new_worker_image_rolls_the_deployment_without_losing_a_task(
        e2e: Stack, namespace: str, cluster: Cluster, backend: PostgresBackend, db: Database) -> None:
    apply_taskqueue(e2e, namespace, "roll", min_replicas=2, max_replicas=2, concurrency=2)
    wait_until(lambda: len(cluster.running_pods("roll")) == 2, timeout=120, what="two worker pods")
    reports = tasks.render_report.using(backend=backend, queue_name="roll").enqueue_many([(2,)] * 12)
    tasks.make_thumbnail.using(backend=backend, queue_name="roll").enqueue_many([(i,) for i in range(100)])
    wait_until(lambda: any(running_on(backend, r) for r in reports), timeout=60, what="work under way")
    apply_taskqueue(e2e, namespace, "roll", image=APP_IMAGE_NEXT, min_replicas=2, max_replicas=2,
                    concurrency=2)
    wait_until(lambda: states(db) == {"SUCCESSFUL": 112}, timeout=240, interval=0.5, what="every task done")
    wait_until(lambda: {c["image"] for p in cluster.running_pods("roll")
                        for c in p["spec"]["containers"]} == {APP_IMAGE_NEXT}, timeout=120,
               what="only pods of the new image")
    with psycopg.connect(db.local) as conn:
        attempts = conn.execute("SELECT max(attempts) FROM kubetasks_tasks").fetchone()
    assert attempts == (1,), "a task ran twice: the rollout interrupted it"


def test_the_operator_pod_deleted_mid_run_comes_back_and_loses_nothing(
        e2e: Stack, namespace: str, cluster: Cluster, backend: PostgresBackend, db: Database) -> None:
    apply_taskqueue(e2e, namespace, "steady", max_replicas=2, backlogDrainSeconds=5)
    tasks.make_thumbnail.using(backend=backend, queue_name="steady").enqueue_many([(i,) for i in range(200)])
    wait_until(lambda: (cluster.replicas("steady") or 0) >= 1, timeout=30, what="scaled up")
    old = _operator_pods(cluster)
    e2e.kubectl("delete", "pod", "-n", OPERATOR_NAMESPACE, *old, "--wait=false")
    wait_until(lambda: (new := _operator_pods(cluster)) and not set(new) & set(old) and all(
        _ready(cluster.core.read_namespaced_pod(n, OPERATOR_NAMESPACE).to_dict()) for n in new),
        timeout=120, what="a new operator pod ready")
    wait_until(lambda: states(db) == {"SUCCESSFUL": 200}, timeout=240, interval=0.5, what="every task done")
    wait_until(lambda: cluster.replicas("steady") == 0, timeout=90, what="the new operator scaling to zero")


def _operator_pods(cluster: Cluster) -> list[str]:
    pods = cluster.core.list_namespaced_pod(OPERATOR_NAMESPACE,
                                            label_selector="app.kubernetes.io/name=kubetasks")
    return [p.metadata.name for p in pods.items if not p.metadata.deletion_timestamp]


def _ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
