"""One TaskQueue's controller: observe PostgreSQL and the Deployment, decide with the pure
scaling policy, apply.

Every step: read the queue's statistics, compute ``desired_replicas``, mark idle pods cheap to
delete before a scale-in, set the Deployment's replicas, and write the TaskQueue status. The
controller reaches the database and the API server through two small ports, ``QueueStore``
and ``KubeApi`` (``Store`` and ``Kube`` in the operator, fakes in the unit tests).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from kubetasks.exceptions import InvalidTaskError
from kubetasks.logs import redact
from kubetasks.parsing import parse_duration
from kubetasks.records import (
    QueueSettings,
    QueueStatistics,
    QueueStats,
    RequeuedTask,
    StatisticsRequest,
)
from kubetasks.schedules import DueSchedule, Schedule, fire_due
from kubetasks_operator import queue_metrics
from kubetasks_operator.objects import DELETION_COST, deletion_costs, deployment_name
from kubetasks_operator.scaling import (
    Deadline,
    Observation,
    ScaleDecision,
    ScalingSpec,
    desired_replicas,
    remember,
)
from kubetasks_operator.spec import TaskQueueSpec

log = logging.getLogger(__name__)


class QueueStore(Protocol):
    """What a queue's controller, its sweeper and the pod handler need of ``kubetasks.store.Store``."""

    @property
    def conninfo(self) -> str: ...
    def connect(self) -> Any: ...
    def queue_statistics(self, queue_name: str, *, scan_limit: int,
                         horizon: timedelta) -> QueueStatistics: ...
    def requeue_pod(self, pod_uid: str, *, reason: str, max_lost: int,
                    claimed_before: datetime | None = None) -> list[RequeuedTask]: ...
    def requeue_absent_pods(self, queue_name: str, live_pod_uids: Iterable[str], *, reason: str,
                            max_lost: int, pod_name_prefix: str) -> list[RequeuedTask]: ...
    def requeue_stale(self, timeout: timedelta, *, reason: str, max_lost: int,
                      queue_name: str | None = None) -> list[RequeuedTask]: ...
    def prune(self, *, successful: timedelta, failed: timedelta, queue_name: str | None = None,
              max_batches: int | None = None) -> int: ...
    def queue_settings(self, queue_names: Sequence[str]) -> list[QueueSettings]: ...
    def set_paused(self, queue_name: str, paused: bool) -> QueueSettings: ...
    def set_limits(self, limits: QueueSettings) -> QueueSettings: ...
    def register_schedules(self, schedules: Sequence[Schedule], *, now: datetime,
                           replace_source: str | None = None) -> list[str]: ...
    def due_schedules(self, queue_names: Sequence[str] | None) -> list[DueSchedule]: ...
    def fire_schedule(self, name: str, *, expected_tick: datetime, tick: datetime | None,
                      next_tick: datetime) -> tuple[bool, int | None]: ...


class KubeApi(Protocol):
    """What a queue's controller needs of ``kubetasks_operator.kube.Kube``."""

    def deployment_state(self, namespace: str, name: str) -> tuple[int, int, str | None] | None: ...
    def apply_deployment(self, body: dict[str, Any]) -> str: ...
    def scale_deployment(self, namespace: str, name: str, replicas: int) -> None: ...
    def annotate_pod(self, namespace: str, name: str, annotations: dict[str, str]) -> None: ...
    def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None: ...

EventPoster = Callable[[str, str, str], None]
"""(type, reason, message) -> None; posts a Kubernetes Event on the TaskQueue."""


def scaling_spec(spec: TaskQueueSpec) -> ScalingSpec:
    s = spec.scaling
    return ScalingSpec(
        min_replicas=s.min_replicas, max_replicas=s.max_replicas,
        concurrency=spec.worker.concurrency,
        scale_down_delay=timedelta(seconds=s.scale_down_delay_seconds),
        scale_to_zero_delay=timedelta(seconds=s.scale_to_zero_delay_seconds),
        pod_startup=timedelta(seconds=s.pod_startup_seconds),
        backlog_drain=timedelta(seconds=s.backlog_drain_seconds),
    )


STATISTICS_SCAN_FACTOR = 25
"""How many tasks per slot at ``maxReplicas`` the statistics look at (at least
``STATISTICS_SCAN_MIN``): see ``statistics_scan_limit``."""
STATISTICS_SCAN_MIN = 1000


def statistics_scan_limit(spec: TaskQueueSpec) -> int:
    """How many READY tasks, in claim order, one scaling step reads (and up to which it counts).

    A scaling decision saturates at ``maxReplicas * concurrency`` tasks: more ready tasks cannot
    raise the backlog term, and a deadline term is capped at ``ceil(position / concurrency)``.
    Reading 25 times that keeps the backlog work exact until tasks average under
    ``backlogDrainSeconds / 25``; beyond the scan the step costs the same however long the queue.
    """
    slots = spec.scaling.max_replicas * spec.worker.concurrency
    return max(STATISTICS_SCAN_MIN, STATISTICS_SCAN_FACTOR * slots)


def condition(kind: str, ok: bool, reason: str, message: str, now: datetime) -> dict[str, str]:
    return {"type": kind, "status": "True" if ok else "False", "reason": reason,
            "message": message, "lastTransitionTime": now.isoformat(timespec="seconds")}


def merge_conditions(old: list[dict[str, str]], new: list[dict[str, str]]) -> list[dict[str, str]]:
    """Keep lastTransitionTime of conditions whose status did not change."""
    before = {c["type"]: c for c in old}
    merged = []
    for fresh in new:
        prior = before.get(fresh["type"])
        if prior and prior.get("status") == fresh["status"]:
            fresh = {**fresh, "lastTransitionTime": prior.get("lastTransitionTime",  # noqa: PLW2901
                                                              fresh["lastTransitionTime"])}
        merged.append(fresh)
    return merged


def declared_schedules(spec: TaskQueueSpec, *, queue_name: str, source: str) -> tuple[Schedule, ...]:
    """The TaskQueue's ``spec.schedules`` as schedules of its queue. Raises ``InvalidTaskError``
    naming what the API server's schema cannot check: the cron expression, the time zone."""
    return tuple(
        Schedule(name=s.name, task_name=s.task, queue_name=queue_name, cron=s.cron,
                 every=parse_duration(s.every) if s.every else None, timezone=s.time_zone,
                 args=list(s.args), kwargs=s.kwargs, priority=s.priority,
                 max_attempts=s.max_attempts, missed=s.missed, source=source)
        for s in spec.schedules)


def declared_settings(spec: TaskQueueSpec, queue_name: str) -> QueueSettings:
    """``spec.paused`` and ``spec.limits`` as the queue's settings row."""
    rate = spec.limits.rate
    return QueueSettings(queue_name, paused=spec.paused, max_running=spec.limits.max_running,
                         rate_limit=rate.starts if rate else None,
                         rate_period=parse_duration(rate.period) if rate else None)


class StatisticsReader(Protocol):
    """Statistics shared by the TaskQueues of one database (``poller.StatisticsPoller``)."""

    def queue_statistics(self, wanted: StatisticsRequest, *, max_age: float) -> QueueStatistics: ...


class DeploymentMissing(LookupError):
    """The worker Deployment is gone (deleted by hand): the operator makes it again."""


READINESS = ("Reconciled", "DatabaseReachable", "WorkerPods", "Scaling")
"""The conditions ``Ready`` sums up: it is True only when the Deployment is applied and the
database answered, and no other of these is False."""


def readiness(conditions: Sequence[Mapping[str, str]]) -> tuple[bool, str, str]:
    """``Ready``'s status, reason and message: the first failing condition's, if any."""
    by_type = {c["type"]: c for c in conditions}
    for kind in READINESS:
        failing = by_type.get(kind)
        if failing is not None and failing["status"] == "False":
            return False, failing.get("reason", kind), failing.get("message", "")
    if "Reconciled" in by_type and "DatabaseReachable" in by_type:
        return True, "Ready", "the worker Deployment is applied and the database answers"
    return False, "Pending", "waiting for the worker Deployment and a first reading of the database"


@dataclass
class QueueController:
    """The scaling state of one TaskQueue, kept in memory between steps."""

    kube: KubeApi
    store: QueueStore
    namespace: str
    name: str
    queue_name: str
    spec: TaskQueueSpec
    post_event: EventPoster
    recent: tuple[tuple[datetime, int], ...] = ()
    idle_since: datetime | None = None
    ready_replicas: int = 0
    fields: dict[str, Any] = field(default_factory=dict)
    conditions: list[dict[str, str]] = field(default_factory=list)
    last_status: dict[str, Any] = field(default_factory=dict)
    last_written: datetime | None = None
    applied_settings: QueueSettings | None = None
    """The pause and limits last written from the spec; None: not yet."""
    registered: tuple[Schedule, ...] | None = None
    """The schedules last registered from the spec; None: not yet."""
    oldest_ready_seconds: float = 0.0
    """How long the longest-waiting due task has waited, at the last observation."""
    statistics: StatisticsReader | None = None
    """Where a step reads the queue: shared with the database's other TaskQueues; None: the
    store, for this queue alone."""
    statistics_max_age: float = 0.0
    """How old a shared reading the next step may use (the daemon: a poll interval, 0 when a
    NOTIFY woke it)."""

    def __post_init__(self) -> None:
        queue_metrics.start_queue(self.namespace, self.name)

    @property
    def deployment(self) -> str:
        return deployment_name(self.name)

    def observe(self, now: datetime, live_pods: Mapping[str, str], max_age: float = 0.0
                ) -> tuple[QueueStats, Observation, dict[str, int]]:
        """Read the queue (``Store.queue_statistics``, or a shared reading at most ``max_age``
        seconds old) and the Deployment."""
        self.apply_settings()
        wanted = StatisticsRequest(self.queue_name, statistics_scan_limit(self.spec),
                                   timedelta(seconds=self.spec.scaling.pod_startup_seconds))
        if self.statistics is not None:
            seen = self.statistics.queue_statistics(wanted, max_age=max_age)
        else:
            seen = self.store.queue_statistics(wanted.queue_name, scan_limit=wanted.scan_limit,
                                               horizon=wanted.horizon)
        stats, settings, self.oldest_ready_seconds = seen.stats, seen.settings, seen.oldest_ready_seconds
        self.fields.update(paused=settings.paused, maxRunning=settings.max_running,
                           rate=settings.rate_text)
        running_by_uid = {uid: n for uid, n in seen.busy_pods.items() if uid in live_pods}
        deadlines = tuple(
            Deadline(expected_at=w.expected_at, work_seconds=w.work_seconds, position=w.position)
            for w in seen.deadlines)
        if stats.ready or stats.running or deadlines:
            self.idle_since = None
        elif self.idle_since is None:
            self.idle_since = now
        state = self.kube.deployment_state(self.namespace, self.deployment)
        if state is None:
            raise DeploymentMissing(f"Deployment {self.deployment} does not exist")
        current, self.ready_replicas, failure = state
        if failure:
            self.report_failure("WorkerPods", "FailedCreate", f"worker pods cannot be created: {failure}")
        else:
            self.set_condition("WorkerPods", True, "Created", "no pod creation failed")
        observation = Observation(
            ready=stats.ready, running=stats.running, deadlines=deadlines,
            current_replicas=current, busy_pods=len(running_by_uid), idle_since=self.idle_since,
            recent=self.recent, backlog_work_seconds=seen.work_seconds,
            paused=settings.paused, max_running=settings.max_running,
            starts_per_second=settings.starts_per_second)
        return stats, observation, running_by_uid

    def apply_settings(self) -> None:
        """Write ``spec.paused`` and ``spec.limits`` to the database when they changed since
        this controller last wrote them (so a ``kubetasks pause`` lasts until the spec changes
        or the operator restarts). The statistics then read what the database holds, which
        every worker obeys and the status shows."""
        declared = declared_settings(self.spec, self.queue_name)
        if declared != self.applied_settings:
            self.store.set_limits(declared)
            self.store.set_paused(self.queue_name, declared.paused)
            self.applied_settings = declared

    def step(self, now: datetime, live_pods: Mapping[str, str]) -> ScaleDecision:
        """One observation, decision and application. Raises on database/API errors."""
        stats, observation, running_by_uid = self.observe(now, live_pods, self.statistics_max_age)
        spec = scaling_spec(self.spec)
        decision = desired_replicas(observation, spec, now)
        if decision.replicas < observation.current_replicas and self.statistics_max_age > 0:
            # Pods are removed only on a fresh reading: a shared one may be a poll old, and miss
            # a pod that has claimed a task since.
            stats, observation, running_by_uid = self.observe(now, live_pods)
            decision = desired_replicas(observation, spec, now)
        self.recent = remember(self.recent, decision, now, spec.scale_down_delay)
        current = observation.current_replicas
        if decision.replicas != current:
            if decision.replicas < current:
                self.mark_deletion_costs(live_pods, running_by_uid)
            self.kube.scale_deployment(self.namespace, self.deployment, decision.replicas)
            self.post_event("Normal", "Scaled", f"{current} -> {decision.replicas}: {decision.reason}")
            log.info("scaled", extra={"taskqueue": self.name, "queue": self.queue_name,
                                      "from": current, "to": decision.replicas,
                                      "reason": decision.reason})
        self.record_metrics(now, stats, observation, decision)
        self.set_condition("DatabaseReachable", True, "Connected", "queue statistics read")
        self.write_status(now, stats, decision, scaled=decision.replicas != current)
        return decision

    def record_metrics(self, now: datetime, stats: QueueStats, observation: Observation,
                       decision: ScaleDecision) -> None:
        oldest = self.oldest_ready_seconds
        slots = self.ready_replicas * self.spec.worker.concurrency
        queue_metrics.record(
            self.namespace, self.name, stats, self.ready_replicas, decision,
            oldest_ready_seconds=oldest,
            at_risk=queue_metrics.deadlines_at_risk(observation.deadlines, now, slots))

    @property
    def schedule_source(self) -> str:
        return f"TaskQueue {self.namespace}/{self.name}"

    def run_schedules(self, now: datetime) -> list[int]:
        """Register ``spec.schedules`` when they changed (replacing this TaskQueue's earlier
        ones), then fire the due schedules of the queue, from the spec or from code: they fire
        while the queue is scaled to zero, and the task they enqueue scales it up like any
        other. Returns the ids of the tasks enqueued."""
        try:
            declared = declared_schedules(self.spec, queue_name=self.queue_name,
                                          source=self.schedule_source)
        except (InvalidTaskError, ValueError) as error:
            # What was registered before goes on firing until the spec is mended.
            self.report_failure("Schedules", "InvalidSchedule", str(error))
        else:
            if declared != self.registered:
                self.store.register_schedules(declared, now=now, replace_source=self.schedule_source)
                self.registered = declared
                if declared or self.condition_reason("Schedules"):
                    self.set_condition("Schedules", True, "Registered",
                                       f"{len(declared)} schedule(s) registered")
        return fire_due(self.store, [self.queue_name])

    def mark_deletion_costs(self, live_pods: Mapping[str, str], running_by_uid: dict[str, int]) -> None:
        for pod, cost in deletion_costs(dict(live_pods), running_by_uid).items():
            self.kube.annotate_pod(self.namespace, pod, {DELETION_COST: str(cost)})

    def set_condition(self, kind: str, ok: bool, reason: str, message: str) -> None:
        """Set one condition (its message masked of secrets), and ``Ready`` from them all."""
        self._put_condition(kind, ok, reason, redact(message))
        if kind != "Ready":
            self._put_condition("Ready", *readiness(self.conditions))

    def _put_condition(self, kind: str, ok: bool, reason: str, message: str) -> None:
        fresh = merge_conditions(self.conditions, [condition(kind, ok, reason, message, utcnow())])
        others = [c for c in self.conditions if c["type"] != kind]
        self.conditions = sorted(others + fresh, key=lambda c: c["type"])

    def report_failure(self, kind: str, reason: str, message: str) -> None:
        """Set ``kind`` False for ``reason``, with a Warning Event when that is news (the
        condition was not already False for the same reason)."""
        current = next((c for c in self.conditions if c["type"] == kind), None)
        if current is None or (current["status"], current.get("reason")) != ("False", reason):
            self.post_event("Warning", reason, redact(message))
        self.set_condition(kind, False, reason, message)

    def condition_reason(self, kind: str) -> str | None:
        """The reason of condition ``kind`` while it is False, else None."""
        return next((c.get("reason") for c in self.conditions
                     if c["type"] == kind and c["status"] == "False"), None)

    def write_status(self, now: datetime, stats: QueueStats | None = None,
                     decision: ScaleDecision | None = None, *, scaled: bool = False) -> None:
        """Patch the TaskQueue status with what changed since the last write. Merge patches
        replace lists whole, so the conditions are always written together from here."""
        if stats is not None:
            self.fields.update(backlog=stats.ready, running=stats.running, scheduled=stats.scheduled,
                               overdue=stats.overdue,
                               countLimit=stats.count_limit if stats.capped else None,
                               nextDeadline=(stats.next_deadline.isoformat(timespec="seconds")
                                             if stats.next_deadline else None))
        if decision is not None:
            self.fields.update(replicas=self.ready_replicas, desiredReplicas=decision.replicas,
                               reason=decision.reason)
            self.set_condition("Scaling", True, "Active", decision.reason)
        status = {"queueName": self.queue_name, **self.fields, "conditions": self.conditions}
        if scaled:
            status["lastScaleTime"] = now.isoformat(timespec="seconds")
        # Texts alone (a countdown in the reason) are refreshed at most every STATUS_REFRESH,
        # so that a hundred idle queues do not patch the API server every poll.
        changed = _settled(status) != _settled(self.last_status)
        stale = self.last_written is None or now - self.last_written >= STATUS_REFRESH
        if scaled or changed or (stale and status != self.last_status):
            self.kube.patch_status(self.namespace, self.name, status)
            self.last_status, self.last_written = status, now


STATUS_REFRESH = timedelta(seconds=10)


def _settled(status: Mapping[str, Any]) -> dict[str, Any]:
    """The status without its free texts: what a change must be written for at once."""
    conditions = [(c["type"], c["status"], c.get("reason")) for c in status.get("conditions", [])]
    return {**{k: v for k, v in status.items() if k not in ("reason", "conditions")},
            "conditions": conditions}


def utcnow() -> datetime:
    return datetime.now(UTC)
