"""Prometheus metrics of the operator, served on its HTTP port at /metrics.

Every name, label and meaning is listed in ``docs/observability.md``.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterable
from datetime import datetime
from typing import Literal, get_args

from prometheus_client import Counter, Gauge, disable_created_metrics

from kubetasks.records import QueueStats
from kubetasks_operator.scaling import Deadline, ScaleDecision

# No ``_created`` series beside each counter child: nothing reads them, Prometheus stores them.
disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in prometheus_client

LABELS = ("namespace", "taskqueue")

DESIRED = Gauge("kubetasks_operator_desired_replicas", "Replicas the policy asks for", LABELS)
ACTUAL = Gauge("kubetasks_operator_replicas", "Ready worker pods of the Deployment", LABELS)
BACKLOG = Gauge("kubetasks_operator_backlog", "READY tasks due now", LABELS)
RUNNING = Gauge("kubetasks_operator_running", "RUNNING tasks", LABELS)
OVERDUE = Gauge("kubetasks_operator_overdue",
                "Unfinished tasks past their deadline (deadlines missed)", LABELS)
AT_RISK = Gauge("kubetasks_operator_deadlines_at_risk",
                "READY tasks whose deadline the ready workers cannot meet at their pace", LABELS)
OLDEST_READY = Gauge("kubetasks_operator_oldest_ready_age_seconds",
                     "How long the longest-waiting due READY task has waited", LABELS)
REQUEUED = Counter("kubetasks_operator_requeued_tasks", "Tasks put back after their pod died",
                   (*LABELS, "signal"))
ERRORS = Counter("kubetasks_operator_errors",
                 "Failed steps by kind: reconcile (the worker Deployment), database, "
                 "kubernetes_api (another API call), other", (*LABELS, "kind"))
ErrorKind = Literal["reconcile", "database", "kubernetes_api", "other"]
SIGNALS = ("pod", "sweep")
"""How a lost task was found: its pod's end seen (handlers), or the periodic sweep."""

BUILD_INFO = Gauge("kubetasks_operator_build_info",
                   "Always 1; the kubetasks version this operator runs", ["version"])


def _installed_version() -> str:
    try:
        return importlib.metadata.version("kubetasks")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


BUILD_INFO.labels(_installed_version()).set(1)


def record(namespace: str, taskqueue: str, stats: QueueStats, ready: int, decision: ScaleDecision,
           *, oldest_ready_seconds: float = 0.0, at_risk: int = 0) -> None:
    DESIRED.labels(namespace, taskqueue).set(decision.replicas)
    ACTUAL.labels(namespace, taskqueue).set(ready)
    BACKLOG.labels(namespace, taskqueue).set(stats.ready)
    RUNNING.labels(namespace, taskqueue).set(stats.running)
    OVERDUE.labels(namespace, taskqueue).set(stats.overdue)
    AT_RISK.labels(namespace, taskqueue).set(at_risk)
    OLDEST_READY.labels(namespace, taskqueue).set(oldest_ready_seconds)


def start_queue(namespace: str, taskqueue: str) -> None:
    """The TaskQueue's counters at 0 from the first scrape: a counter that appears at its first
    increment has no earlier sample, and ``increase()`` and ``rate()`` would miss that step."""
    for signal in SIGNALS:
        REQUEUED.labels(namespace, taskqueue, signal)
    for kind in get_args(ErrorKind):
        ERRORS.labels(namespace, taskqueue, kind)


def count_error(namespace: str, taskqueue: str, kind: ErrorKind) -> None:
    ERRORS.labels(namespace, taskqueue, kind).inc()


def deadlines_at_risk(deadlines: Iterable[Deadline], now: datetime, slots: int) -> int:
    """READY tasks with a deadline still ahead that ``slots`` busy slots would not reach in
    time: the work up to each, in claim order, spread over at most one slot per task, ends
    after its deadline. With no slot, every deadline ahead with work before it is at risk.
    Deadlines already passed are not counted here: they are missed (``overdue``)."""
    at_risk = 0
    for deadline in deadlines:
        left = (deadline.expected_at - now).total_seconds()
        if left < 0:
            continue
        parallel = min(slots, deadline.position)
        if parallel <= 0:
            at_risk += deadline.work_seconds > 0
        elif deadline.work_seconds / parallel > left:
            at_risk += 1
    return at_risk
