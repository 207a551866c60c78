"""Prometheus metrics of the operator, served on its HTTP port at /metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from kubetasks.records import QueueStats
from kubetasks_operator.scaling import ScaleDecision

LABELS = ("namespace", "taskqueue")

DESIRED = Gauge("kubetasks_operator_desired_replicas", "Replicas the policy asks for", LABELS)
ACTUAL = Gauge("kubetasks_operator_replicas", "Ready worker pods of the Deployment", LABELS)
BACKLOG = Gauge("kubetasks_operator_backlog", "READY tasks due now", LABELS)
RUNNING = Gauge("kubetasks_operator_running", "RUNNING tasks", LABELS)
OVERDUE = Gauge("kubetasks_operator_overdue", "Unfinished tasks past their deadline", LABELS)
REQUEUED = Counter("kubetasks_operator_requeued_tasks", "Tasks put back after their pod died",
                   (*LABELS, "signal"))


def record(namespace: str, taskqueue: str, stats: QueueStats, ready: int, decision: ScaleDecision) -> None:
    DESIRED.labels(namespace, taskqueue).set(decision.replicas)
    ACTUAL.labels(namespace, taskqueue).set(ready)
    BACKLOG.labels(namespace, taskqueue).set(stats.ready)
    RUNNING.labels(namespace, taskqueue).set(stats.running)
    OVERDUE.labels(namespace, taskqueue).set(stats.overdue)
