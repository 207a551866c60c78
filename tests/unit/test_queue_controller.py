"""One TaskQueue's controller and sweeper, on in-memory fakes of the store and the Kubernetes
API: what a user sees of a step (the Deployment's scale, pod deletion costs, Events, status)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kubetasks.records import DeadlineWork, QueueSettings, QueueStatistics, QueueStats, RequeuedTask
from kubetasks.result import TaskResultStatus
from kubetasks_operator.controller import DeploymentMissing, QueueController
from kubetasks_operator.objects import DELETION_COST
from kubetasks_operator.spec import parse_spec
from kubetasks_operator.sweeper import sweep

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
SPEC = {"database": {"secretRef": {"name": "db"}}, "worker": {"image": "app:1", "concurrency": 2},
        "scaling": {"maxReplicas": 5, "backlogDrainSeconds": 0, "scaleDownDelaySeconds": 0}}


@dataclass
class FakeStore:
    conninfo: str = "postgresql://db/app"
    stats: dict[str, QueueStats] = field(default_factory=dict)
    running_by_uid: dict[str, int] = field(default_factory=dict)
    deadlines: list[DeadlineWork] = field(default_factory=list)
    backlog_seconds: float = 0.0
    oldest_ready: float = 0.0
    absent_pod_tasks: list[RequeuedTask] = field(default_factory=list)
    pruned: list[dict[str, Any]] = field(default_factory=list)
    schedules: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, QueueSettings] = field(default_factory=dict)
    scan_limits: list[int] = field(default_factory=list)

    def queue_settings(self, queue_names: Any) -> list[QueueSettings]:
        return [self.settings.get(name) or QueueSettings(name) for name in queue_names]

    def set_paused(self, queue_name: str, paused: bool) -> QueueSettings:
        old = self.settings.get(queue_name) or QueueSettings(queue_name)
        self.settings[queue_name] = QueueSettings(queue_name, paused, old.max_running,
                                                  old.rate_limit, old.rate_period)
        return self.settings[queue_name]

    def set_limits(self, limits: QueueSettings) -> QueueSettings:
        old = self.settings.get(limits.queue_name) or QueueSettings(limits.queue_name)
        self.settings[limits.queue_name] = QueueSettings(
            limits.queue_name, old.paused, limits.max_running, limits.rate_limit, limits.rate_period)
        return self.settings[limits.queue_name]

    def set_queue(self, ready: int = 0, running: int = 0) -> None:
        self.stats["emails"] = QueueStats("emails", ready, 0, running, 0, None)
        self.backlog_seconds = float(ready + running)

    def queue_statistics(self, queue_name: str, *, scan_limit: int,
                         horizon: timedelta) -> QueueStatistics:
        self.scan_limits.append(scan_limit)
        exact = self.stats.get(queue_name) or QueueStats(queue_name, 0, 0, 0, 0, None)
        # As PostgreSQL: ready, scheduled and overdue counted up to the scan limit.
        stats = replace(exact, ready=min(exact.ready, scan_limit), count_limit=scan_limit,
                        scheduled=min(exact.scheduled, scan_limit),
                        overdue=min(exact.overdue, scan_limit))
        return QueueStatistics(
            stats=stats, busy_pods=dict(self.running_by_uid), deadlines=tuple(self.deadlines),
            work_seconds=self.backlog_seconds,
            oldest_ready_seconds=self.oldest_ready if stats.ready else 0.0,  # as PostgreSQL: none due
            settings=self.queue_settings([queue_name])[0], scanned=min(stats.ready, scan_limit),
            scan_limit=scan_limit)

    def requeue_absent_pods(self, queue_name: str, live_pod_uids: Any, **_: Any) -> list[RequeuedTask]:
        return list(self.absent_pod_tasks)

    def requeue_stale(self, timeout: timedelta, **_: Any) -> list[RequeuedTask]:
        return []

    def prune(self, **kwargs: Any) -> int:
        self.pruned.append(kwargs)
        return 0

    def register_schedules(self, schedules: Any, *, now: datetime,
                           replace_source: str | None = None) -> list[str]:
        self.schedules = {name: s for name, s in self.schedules.items()
                          if s.source != replace_source} | {s.name: s for s in schedules}
        return [s.name for s in schedules]

    def due_schedules(self, queue_names: Any) -> list[Any]:
        return []  # firing is tested on PostgreSQL: tests/integration/test_operator_schedules.py

    def fire_schedule(self, name: str, **_: Any) -> tuple[bool, int | None]:
        return False, None


@dataclass
class FakeKube:
    replicas: int | None = 0
    ready: int = 0
    failure: str | None = None
    calls: list[tuple[str, Any]] = field(default_factory=list)
    statuses: list[dict[str, Any]] = field(default_factory=list)

    def deployment_state(self, namespace: str, name: str) -> tuple[int, int, str | None] | None:
        return None if self.replicas is None else (self.replicas, self.ready, self.failure)

    def apply_deployment(self, body: dict[str, Any]) -> str:
        return "replaced"

    def scale_deployment(self, namespace: str, name: str, replicas: int) -> None:
        self.calls.append(("scale", replicas))
        self.replicas = replicas

    def annotate_pod(self, namespace: str, name: str, annotations: dict[str, str]) -> None:
        self.calls.append(("annotate", (name, annotations[DELETION_COST])))

    def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.statuses.append(status)


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def kube() -> FakeKube:
    return FakeKube()


@pytest.fixture
def events() -> list[tuple[str, str, str]]:
    return []


@pytest.fixture
def controller(store: FakeStore, kube: FakeKube, events: list[tuple[str, str, str]]) -> QueueController:
    return QueueController(kube=kube, store=store, namespace="shop", name="emails",
                           queue_name="emails", spec=parse_spec(SPEC),
                           post_event=lambda *event: events.append(event))


def test_a_backlog_scales_the_deployment_up_and_says_why(
        controller: QueueController, store: FakeStore, kube: FakeKube,
        events: list[tuple[str, str, str]]) -> None:
    store.set_queue(ready=6)
    decision = controller.step(NOW, live_pods={})

    assert kube.calls == [("scale", 3)]  # a slot per task, two per pod
    assert events == [("Normal", "Scaled", f"0 -> 3: {decision.reason}")]
    status = kube.statuses[-1]
    assert (status["backlog"], status["desiredReplicas"], status["queueName"]) == (6, 3, "emails")
    assert status["lastScaleTime"] == NOW.isoformat(timespec="seconds")
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "DatabaseReachable": "True", "Scaling": "True", "WorkerPods": "True",
        "Ready": "False"}  # not until the Deployment is applied (Reconciled)


def test_a_backlog_past_the_statistics_scan_shows_as_at_least_and_still_scales_to_the_maximum(
        controller: QueueController, store: FakeStore, kube: FakeKube) -> None:
    store.set_queue(ready=50_000)
    controller.step(NOW, live_pods={})

    # maxReplicas 5 x concurrency 2 saturates at 10 tasks; the scan reads max(1000, 25 x 10).
    assert store.scan_limits == [1000]
    status = kube.statuses[-1]
    assert (status["backlog"], status["countLimit"], status["desiredReplicas"]) == (1000, 1000, 5)

    store.set_queue(ready=6)
    controller.step(NOW + timedelta(seconds=1), live_pods={})
    assert (kube.statuses[-1]["backlog"], kube.statuses[-1]["countLimit"]) == (6, None)


def test_the_statistics_scan_grows_with_the_slots_at_max_replicas(store: FakeStore, kube: FakeKube) -> None:
    spec = {**SPEC, "scaling": {**SPEC["scaling"], "maxReplicas": 100}}
    controller = QueueController(kube=kube, store=store, namespace="shop", name="emails",
                                 queue_name="emails", spec=parse_spec(spec), post_event=lambda *_: None)
    controller.step(NOW, live_pods={})
    assert store.scan_limits == [25 * 100 * 2]


def test_a_scale_in_first_makes_idle_pods_cheaper_to_delete_than_busy_ones(
        controller: QueueController, store: FakeStore, kube: FakeKube) -> None:
    kube.replicas = kube.ready = 3
    store.set_queue(running=1)
    store.running_by_uid = {"uid-a": 1}
    controller.step(NOW, live_pods={"uid-a": "w-a", "uid-b": "w-b", "uid-c": "w-c"})

    *marks, scaled = kube.calls
    assert sorted(marks) == [("annotate", ("w-a", "100")), ("annotate", ("w-b", "0")),
                             ("annotate", ("w-c", "0"))]
    assert scaled == ("scale", 1)  # never below the busy pod


def test_nothing_changes_when_the_deployment_already_fits(
        controller: QueueController, store: FakeStore, kube: FakeKube,
        events: list[tuple[str, str, str]]) -> None:
    kube.replicas = kube.ready = 2
    store.set_queue(ready=4)
    controller.step(NOW, live_pods={})
    assert kube.calls == [] and events == []
    assert "lastScaleTime" not in kube.statuses[-1]


def test_a_deployment_deleted_by_hand_is_reported_for_the_loop_to_make_again(
        controller: QueueController, store: FakeStore, kube: FakeKube) -> None:
    kube.replicas = None
    store.set_queue(ready=1)
    with pytest.raises(DeploymentMissing, match="Deployment emails-worker does not exist"):
        controller.step(NOW, live_pods={})
    assert kube.calls == []


def test_status_numbers_are_written_at_once_and_texts_alone_at_most_every_ten_seconds(
        controller: QueueController, store: FakeStore, kube: FakeKube) -> None:
    kube.replicas = kube.ready = 1
    store.set_queue()  # idle: the reason counts down to scale to zero, a text that changes
    controller.step(NOW, live_pods={})
    controller.step(NOW + timedelta(seconds=3), live_pods={})
    assert len(kube.statuses) == 1

    store.set_queue(ready=1)  # a number changed: written at once
    controller.step(NOW + timedelta(seconds=4), live_pods={})
    assert len(kube.statuses) == 2 and kube.statuses[-1]["backlog"] == 1

    store.set_queue()
    controller.step(NOW + timedelta(seconds=5), live_pods={})
    controller.step(NOW + timedelta(seconds=6), live_pods={})
    controller.step(NOW + timedelta(seconds=16), live_pods={})
    assert [s["backlog"] for s in kube.statuses] == [0, 1, 0, 0]


def test_a_condition_keeps_its_transition_time_while_its_status_holds(
        controller: QueueController) -> None:
    controller.set_condition("DatabaseReachable", False, "DatabaseUnreachable", "refused")
    first = controller.conditions[0]["lastTransitionTime"]
    controller.set_condition("DatabaseReachable", False, "DatabaseUnreachable", "timeout")
    assert controller.conditions[0] == {
        "type": "DatabaseReachable", "status": "False", "reason": "DatabaseUnreachable",
        "message": "timeout", "lastTransitionTime": first}


def test_the_sweep_puts_back_tasks_of_gone_pods_and_prunes_by_retention(
        controller: QueueController, store: FakeStore, events: list[tuple[str, str, str]]) -> None:
    store.absent_pod_tasks = [RequeuedTask(7, "emails", "app.send", TaskResultStatus.READY)]
    assert sweep(controller, live_pods={"uid-a": "w-a"}) == 1
    assert events == [("Warning", "TasksRequeued",
                       "sweep put back 1 task(s) of gone pods or stopped heartbeats: 7")]
    assert store.pruned == [{"successful": timedelta(days=7), "failed": timedelta(days=30),
                             "queue_name": "emails", "max_batches": 4}]
