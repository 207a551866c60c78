"""The worker's Prometheus metrics, in a registry of their own (served at /metrics)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from kubetasks.task import registry as task_registry

SECONDS_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                   60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
"""From a millisecond no-op to an hour-long report; task run and wait times span all of it."""


def task_label(task_name: str) -> str:
    """The ``task_name`` label: a registered name, or one value for every unknown name, since
    the names in the database are not under this worker's control."""
    return task_name if task_name in task_registry else "unregistered"


class WorkerMetrics:
    """Counters of what this worker process did, by queue and task name."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        by_queue, by_task = ["queue"], ["queue", "task_name"]
        self.claimed = Counter("kubetasks_worker_tasks_claimed", "Tasks claimed", by_queue,
                               registry=r)
        self.succeeded = Counter("kubetasks_worker_tasks_succeeded",
                                 "Tasks that ended SUCCESSFUL", by_task, registry=r)
        self.failed = Counter("kubetasks_worker_tasks_failed", "Tasks that ended FAILED",
                              by_task, registry=r)
        self.retried = Counter("kubetasks_worker_tasks_retried",
                               "Failed attempts put back for a later retry", by_task, registry=r)
        self.lost_returned = Counter(
            "kubetasks_worker_lost_tasks_returned",
            "Tasks an earlier process of this pod held, put back at start", by_queue, registry=r)
        self.released = Counter("kubetasks_worker_tasks_released",
                                "Unfinished tasks put back on shutdown", by_queue, registry=r)
        self.claims_lost = Counter(
            "kubetasks_worker_claims_lost",
            "Claims taken away while this worker held them (its result was not recorded)",
            by_queue, registry=r)
        self.duration = Histogram("kubetasks_worker_task_duration_seconds",
                                  "Run time of finished attempts", ["task_name"],
                                  buckets=SECONDS_BUCKETS, registry=r)
        self.queue_wait = Histogram(
            "kubetasks_worker_queue_wait_seconds",
            "From when a task could run (max of run_after, enqueued_at) to its claim",
            by_queue, buckets=SECONDS_BUCKETS, registry=r)
        self.running = Gauge("kubetasks_worker_tasks_running", "Task functions running now",
                             registry=r)

    def count_running(self, read: Callable[[], float]) -> None:
        """Report ``read()`` as the running gauge at every scrape."""
        self.running.set_function(read)
