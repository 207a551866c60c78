"""Housekeeping of one TaskQueue, every ``lostTasks.sweepIntervalSeconds``: put back the tasks
of worker pods that no longer exist and of stopped heartbeats, and prune finished tasks past
the queue's retention (lost-task signal 3 of the design)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

from kubetasks.records import RequeuedTask
from kubetasks_operator import queue_metrics
from kubetasks_operator.controller import QueueController
from kubetasks_operator.spec import parse_retention

PRUNE_BATCHES_PER_SWEEP = 4
"""Prune at most this many batches per sweep, the rest on later sweeps: scaling must not wait."""


def sweep(queue: QueueController, live_pods: Mapping[str, str]) -> int:
    """Put back what was lost, prune what is past retention; returns the tasks put back."""
    moved = requeue_lost(queue, live_pods)
    retention = queue.spec.retention
    queue.store.prune(successful=parse_retention(retention.successful),
                      failed=parse_retention(retention.failed), queue_name=queue.queue_name,
                      max_batches=PRUNE_BATCHES_PER_SWEEP)
    if moved:
        queue_metrics.REQUEUED.labels(queue.namespace, queue.name, "sweep").inc(len(moved))
        queue.post_event("Warning", "TasksRequeued",
                         f"sweep put back {len(moved)} task(s) of gone pods or stopped heartbeats: "
                         + ", ".join(str(t.task_id) for t in moved[:10]))
    return len(moved)


def requeue_lost(queue: QueueController, live_pods: Mapping[str, str]) -> list[RequeuedTask]:
    """Claims of this TaskQueue's pods (by name prefix) that are not live, and claims whose
    heartbeat is older than the timeout. Workers elsewhere serving the same queue are left to
    the heartbeat check."""
    lost = queue.spec.lost_tasks
    moved = queue.store.requeue_absent_pods(
        queue.queue_name, live_pods.keys(), reason="the claiming pod no longer exists",
        max_lost=lost.max_lost, pod_name_prefix=f"{queue.deployment}-")
    moved += queue.store.requeue_stale(
        timedelta(seconds=lost.heartbeat_timeout_seconds), queue_name=queue.queue_name,
        reason=f"no heartbeat for {lost.heartbeat_timeout_seconds}s", max_lost=lost.max_lost)
    return moved
