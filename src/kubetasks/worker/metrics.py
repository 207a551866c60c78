"""The worker's Prometheus metrics, in a registry of their own (served at /metrics).

Every name, label and meaning is listed in ``docs/observability.md``.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
)

from kubetasks.task import registry as task_registry

SECONDS_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                   60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
"""From a millisecond no-op to an hour-long report; task run and wait times span all of it."""

# A ``_created`` series per counter and histogram child doubles what Prometheus stores and no
# dashboard or alert of kubetasks reads it. The switch is process-wide in prometheus_client.
disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in prometheus_client


def task_label(task_name: str) -> str:
    """The ``task_name`` label: a registered name, or one value for every unknown name, since
    the names in the database are not under this worker's control."""
    return task_name if task_name in task_registry else "unregistered"


def installed_version() -> str:
    """The ``version`` label of ``kubetasks_worker_build_info``: the installed distribution's."""
    try:
        return importlib.metadata.version("kubetasks")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True, slots=True)
class TaskSeries:
    """The labelled children one (queue, task name) counts into. Looking a child up takes a
    lock and builds a label tuple; a worker finishing thousands of tasks a second does it
    once per name instead (``WorkerMetrics.of``)."""

    claimed: Counter
    queue_wait: Histogram
    succeeded: Counter
    failed: Counter
    retried: Counter
    duration: Histogram


class WorkerMetrics:
    """Counters of what this worker process did, by queue and task name; its slots; and the
    process itself (CPU, memory, open files, start time) with the kubetasks version."""

    def __init__(self, *, slots: int = 0, queues: Iterable[str] = ()) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        by_queue, by_task = ["queue"], ["queue", "task_name"]
        ProcessCollector(registry=r)
        Gauge("kubetasks_worker_build_info", "Always 1; the kubetasks version this worker runs",
              ["version"], registry=r).labels(installed_version()).set(1)
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
        self.slots_in_use = Gauge(
            "kubetasks_worker_slots_in_use",
            "Slots taken by a task function still executing (a sync task past its timeout too)",
            registry=r)
        Gauge("kubetasks_worker_slots", "Slots of this worker (--concurrency)",
              registry=r).set(slots)
        self._series: dict[tuple[str, str], TaskSeries] = {}
        for queue in queues:
            self.start_queue(queue)

    def start_queue(self, queue: str) -> None:
        """The queue's series at 0 from the first scrape: a counter that appears at its first
        increment has no earlier sample, and ``increase()`` and ``rate()`` would miss that step."""
        for counter in (self.claimed, self.released, self.claims_lost, self.lost_returned):
            counter.labels(queue)
        self.queue_wait.labels(queue)

    def of(self, queue: str, task_name: str) -> TaskSeries:
        """The children a task of ``task_name`` on ``queue`` counts into, made on first use."""
        key = (queue, task_label(task_name))
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = TaskSeries(
                claimed=self.claimed.labels(queue), queue_wait=self.queue_wait.labels(queue),
                succeeded=self.succeeded.labels(*key), failed=self.failed.labels(*key),
                retried=self.retried.labels(*key), duration=self.duration.labels(key[1]))
        return series

    def count_running(self, read: Callable[[], float]) -> None:
        """Report ``read()`` (the slots taken) as the running and in-use gauges at every scrape."""
        self.running.set_function(read)
        self.slots_in_use.set_function(read)
