"""The operator on the real control plane, with worker pods run by the local kubelet.

Each test has its own namespace, database and operator process (watching that namespace).
What the kubelet's own behaviour decides — a deleted busy pod, scale-in by deletion cost, a
restarted container — runs on real pods in tests/e2e/test_scenarios.py instead.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from localcluster import sample_tasks as queue_tasks
from localcluster.controlplane import ControlPlane
from localcluster.operator import Cluster, OperatorProcess, backend_for, taskqueue
from localcluster.polling import wait_until

from kubetasks import TaskResultStatus

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("local_kubelet", "crd")]


def test_scales_from_zero_drains_the_queue_and_returns_to_zero(
        cluster: Cluster, operator: OperatorProcess, dsn: str) -> None:
    cluster.create_taskqueue(taskqueue("burst", "burst", max_replicas=3, backlogDrainSeconds=10))
    wait_until(lambda: cluster.replicas("burst") == 0, timeout=30, what="the Deployment at 0")
    wait_until(lambda: (cluster.condition("burst", "Scaling") or {}).get("status") == "True",
               timeout=30, what="the scaler running")

    backend = backend_for(dsn)
    enqueued_at = time.monotonic()
    results = queue_tasks.short.using(backend=backend, queue_name="burst").enqueue_many(
        [(i,) for i in range(200)])
    wait_until(lambda: (cluster.replicas("burst") or 0) >= 1, timeout=10, interval=0.05,
               what="scale-up from zero")
    scale_up_seconds = time.monotonic() - enqueued_at

    backlogs: list[int] = []

    def drained() -> bool:
        backlogs.append(int(cluster.status("burst").get("backlog", -1)))
        return all(backend.get_result(r.id).status == TaskResultStatus.SUCCESSFUL for r in results[-5:])

    wait_until(drained, timeout=120, interval=0.5, what="the queue drained")
    finished = [backend.get_result(r.id) for r in results]
    assert {r.status for r in finished} == {TaskResultStatus.SUCCESSFUL}
    assert all(r.attempts == 1 for r in finished)
    pods_used = {r.return_value for r in finished}
    assert len(pods_used) >= 1 and all(pods_used)
    assert scale_up_seconds < 5, f"scale-up took {scale_up_seconds:.2f}s"
    seen = [b for b in backlogs if b >= 0]
    peak = seen.index(max(seen))
    assert seen[peak] > 0, "the status never showed the backlog"
    assert seen[peak:] == sorted(seen[peak:], reverse=True), f"backlog rose again: {seen}"
    assert seen[-1] < seen[peak]
    print(f"scale-up from zero: {scale_up_seconds:.3f}s after enqueue; backlog samples {seen}")

    wait_until(lambda: cluster.replicas("burst") == 0, timeout=60, what="scale to zero after idle")
    scaled = [e["message"] for e in cluster.events("Scaled")]
    assert any(m.startswith("0 -> ") for m in scaled), scaled
    assert any(m.endswith(" -> 0") or " -> 0:" in m for m in scaled), scaled
    assert cluster.status("burst")["backlog"] == 0
    metrics = operator.metrics()
    assert 'kubetasks_operator_replicas{namespace="' in metrics
    backend.close()


def test_tight_deadlines_get_more_replicas_than_the_same_backlog_without(
        cluster: Cluster, operator: OperatorProcess, dsn: str) -> None:
    # Workers of an image the node does not have never start: the backlog stays put and the
    # two decisions can be compared on equal terms.
    for name in ("plain", "urgent"):
        cluster.create_taskqueue(taskqueue(name, name, max_replicas=20, concurrency=2,
                                           image="not-on-this-node:1"))
    backend = backend_for(dsn)
    queue_tasks.long.using(backend=backend, queue_name="plain").enqueue_many([(1,)] * 40)
    queue_tasks.long.using(backend=backend, queue_name="urgent",
                           expected_at=datetime.now(UTC) + timedelta(seconds=20)).enqueue_many([(1,)] * 40)

    plain = wait_until(lambda: cluster.status("plain").get("desiredReplicas"), timeout=30,
                       what="a decision for the plain queue")
    urgent = wait_until(lambda: cluster.status("urgent").get("desiredReplicas"), timeout=30,
                        what="a decision for the urgent queue")

    assert plain == 1, cluster.status("plain")["reason"]
    assert urgent > plain, cluster.status("urgent")["reason"]
    assert cluster.status("urgent")["reason"].startswith("deadline:")
    assert cluster.replicas("urgent") == urgent  # the decision is the Deployment's scale
    assert cluster.status("urgent")["replicas"] == 0  # no pod of that image ever gets ready
    backend.close()


@pytest.mark.parametrize(("change", "message"), [
    ({"scaling": {"minReplicas": 5, "maxReplicas": 2}},
     "spec.scaling: Invalid value: \"object\": scaling.minReplicas must not exceed scaling.maxReplicas"),
    ({"worker": {"image": "x", "concurrency": 0}}, "spec.worker.concurrency: Invalid value: 0"),
    ({"database": {}}, 'spec.database.secretRef: Required value'),
    ({"queueName": "no spaces"}, "spec.queueName: Invalid value"),
])
def test_invalid_specs_are_refused_by_the_api_server(
        control_plane: ControlPlane, namespace: str, change: dict[str, object], message: str) -> None:
    import json

    body = taskqueue("bad", "bad")
    body["metadata"]["namespace"] = namespace
    body["spec"].update(change)
    refused = control_plane.kubectl("apply", "--dry-run=server", "-f", "-", input=json.dumps(body),
                                    check=False)
    assert refused.returncode != 0
    assert message in refused.stderr, refused.stderr


def test_a_missing_secret_shows_a_condition_and_an_event(
        cluster: Cluster, operator: OperatorProcess) -> None:
    cluster.create_taskqueue(taskqueue("nosecret", "nosecret", secret="absent"))

    condition = wait_until(lambda: cluster.condition("nosecret", "Ready"), timeout=30,
                           what="the Ready condition")
    assert condition["status"] == "False"
    assert condition["reason"] == "DatabaseSecretMissing"
    assert "absent" in condition["message"]
    events = wait_until(lambda: cluster.events("DatabaseSecretMissing"), timeout=30, what="an Event")
    assert "does not exist" in events[0]["message"]

    cluster.create_secret("absent", cluster.core.read_namespaced_secret("db", cluster.namespace)
                          .data and _secret_url(cluster))
    wait_until(lambda: (cluster.condition("nosecret", "Ready") or {}).get("status") == "True",
               timeout=60, what="Ready once the Secret exists")
    assert operator.process is not None and operator.process.poll() is None


def _secret_url(cluster: Cluster) -> str:
    import base64

    secret = cluster.core.read_namespaced_secret("db", cluster.namespace)
    return base64.b64decode(secret.data["url"]).decode()


def test_operator_restart_mid_run_loses_nothing(
        cluster: Cluster, control_plane: ControlPlane, namespace: str, dsn: str, tmp_path: Path) -> None:
    operator = OperatorProcess(control_plane, namespace, tmp_path)
    operator.start()
    try:
        cluster.create_taskqueue(taskqueue("restart", "restart", max_replicas=2))
        backend = backend_for(dsn)
        results = queue_tasks.short.using(backend=backend, queue_name="restart").enqueue_many(
            [(i,) for i in range(60)])
        wait_until(lambda: (cluster.replicas("restart") or 0) >= 1, timeout=20, what="scale-up")
        operator.kill()
        more = queue_tasks.short.using(backend=backend, queue_name="restart").enqueue_many(
            [(i,) for i in range(60, 100)])
        operator.start()

        def all_done() -> bool:
            return all(backend.get_result(r.id).is_finished for r in results + more)

        wait_until(all_done, timeout=120, interval=0.5, what="every task finished")
        finished = [backend.get_result(r.id) for r in results + more]
        assert {r.status for r in finished} == {TaskResultStatus.SUCCESSFUL}
        assert sum(r.attempts for r in finished) == len(finished)
        wait_until(lambda: cluster.replicas("restart") == 0, timeout=60, what="back to zero")
        backend.close()
    finally:
        print(operator.log()[-6000:])
        operator.stop()
