"""spec.paused and spec.limits through the real API server and operator: written to the
database, shown in the status, obeyed by the scaler and by the worker pods."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from localcluster import sample_tasks as queue_tasks
from localcluster.operator import Cluster, OperatorProcess, backend_for, taskqueue
from localcluster.polling import wait_until

from kubetasks import TaskResultStatus
from kubetasks.records import QueueSettings
from kubetasks.store import Store
from kubetasks_operator.spec import GROUP, PLURAL, VERSION

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("local_kubelet", "crd")]


def patch_spec(cluster: Cluster, name: str, spec: dict[str, Any]) -> None:
    cluster.custom.patch_namespaced_custom_object(GROUP, VERSION, cluster.namespace, PLURAL, name,
                                                  {"spec": spec})


def running(dsn: str, queue: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM kubetasks_tasks WHERE state = 'RUNNING' AND "
                           "queue_name = %s", [queue]).fetchone()
        assert row is not None
        return int(row[0])


def test_a_paused_capped_queue_waits_then_drains_within_its_cap(
        cluster: Cluster, operator: OperatorProcess, dsn: str) -> None:
    body = taskqueue("capped", "capped", max_replicas=4, concurrency=2, backlogDrainSeconds=0)
    body["spec"].update(paused=True, limits={"maxRunning": 3})
    cluster.create_taskqueue(body)
    backend = backend_for(dsn)
    results = queue_tasks.long.using(backend=backend, queue_name="capped").enqueue_many(
        [(0.3,) for _ in range(12)])

    def backlog_seen() -> dict[str, Any] | None:
        status = cluster.status("capped")
        return status if status.get("backlog") == 12 else None

    status = wait_until(backlog_seen, timeout=30, what="the status showing the backlog")
    assert (status["paused"], status["maxRunning"], status["desiredReplicas"]) == (True, 3, 0)
    assert cluster.replicas("capped") == 0  # a paused queue is not scaled up
    with Store(dsn) as store:
        assert store.queue_settings(["capped"]) == [QueueSettings("capped", True, 3)]

    patch_spec(cluster, "capped", {"paused": False})
    peaks: list[int] = []
    pods: list[int] = []

    def drained() -> bool:
        peaks.append(running(dsn, "capped"))
        pods.append(cluster.replicas("capped") or 0)
        return all(backend.get_result(r.id).status == TaskResultStatus.SUCCESSFUL for r in results)

    wait_until(drained, timeout=120, interval=0.05, what="the queue drained")
    assert max(peaks) <= 3 and max(pods) == 2  # ceil(maxRunning 3 / concurrency 2), not 4
    assert cluster.status("capped")["paused"] is False
