"""The real operator's /metrics, scraped and parsed as Prometheus parses it: the per-queue
series a dashboard and the alerts read, on a queue whose workers cannot start and on one whose
database cannot be reached."""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
from datetime import timedelta

import pytest
from localcluster import sample_tasks as queue_tasks
from localcluster.operator import Cluster, OperatorProcess, backend_for, taskqueue
from localcluster.polling import wait_until
from localcluster.postgres import free_port
from prometheus_client.parser import text_string_to_metric_families

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("local_kubelet", "crd")]


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(operator: OperatorProcess, name: str, **labels: str) -> float | None:
    return samples(operator.metrics()).get((name, frozenset(labels.items())))


def test_the_operator_serves_the_queue_series_the_alerts_read(
        cluster: Cluster, operator: OperatorProcess, dsn: str) -> None:
    # "stuck": its worker image exists nowhere, so its tasks wait; "nowhere": no database.
    cluster.create_taskqueue(taskqueue("stuck", "stuck", image="not-on-this-node:1", max_replicas=1))
    cluster.create_secret("nowhere", f"postgresql://kubetasks@127.0.0.1:{free_port()}/none")
    cluster.create_taskqueue(taskqueue("nowhere", "nowhere", secret="nowhere"))
    backend = backend_for(dsn)
    tasks = queue_tasks.short.using(backend=backend, queue_name="stuck")
    tasks.using(expected_at=timedelta(hours=1)).enqueue_many([(1,), (2,)])
    tasks.using(expected_at=timedelta(seconds=1)).enqueue(3)
    backend.close()
    stuck = {"namespace": cluster.namespace, "taskqueue": "stuck"}

    wait_until(lambda: (value(operator, "kubetasks_operator_oldest_ready_age_seconds", **stuck) or 0) > 3,
               timeout=60, what="the oldest ready task's age growing")
    wait_until(lambda: value(operator, "kubetasks_operator_overdue", **stuck) == 1, timeout=30,
               what="the missed deadline counted")
    # No ready worker: the two deadlines ahead are at risk, the passed one is missed instead.
    assert value(operator, "kubetasks_operator_deadlines_at_risk", **stuck) == 2
    assert value(operator, "kubetasks_operator_backlog", **stuck) == 3
    nowhere = {"namespace": cluster.namespace, "taskqueue": "nowhere"}
    wait_until(lambda: (value(operator, "kubetasks_operator_errors_total", kind="database",
                              **nowhere) or 0) >= 2, timeout=60, what="database errors counted")

    text = operator.metrics()
    found = samples(text)
    for kind in ("reconcile", "database", "kubernetes_api", "other"):
        assert found[("kubetasks_operator_errors_total", frozenset({**stuck, "kind": kind}.items()))] == 0
    assert found[("kubetasks_operator_requeued_tasks_total",
                  frozenset({**stuck, "signal": "pod"}.items()))] == 0
    version = importlib.metadata.version("kubetasks")
    assert found[("kubetasks_operator_build_info", frozenset({"version": version}.items()))] == 1
    assert found[("process_resident_memory_bytes", frozenset())] > 0
    assert not [name for name, _ in found if name.endswith("_created")]
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing: apt-get install --no-install-recommends prometheus")
    checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
