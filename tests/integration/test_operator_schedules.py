"""The operator's side of schedules, on PostgreSQL: a TaskQueue's spec.schedules are registered,
fired while the queue is scaled to zero (and the step scales it up for the task), replaced when
the spec changes, and a bad one is reported without stopping the others."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from kubetasks.schedules import Schedule
from kubetasks.store import Store
from kubetasks_operator.controller import QueueController
from kubetasks_operator.spec import parse_spec

BASE = {"database": {"secretRef": {"name": "db"}}, "worker": {"image": "app:1"},
        "scaling": {"minReplicas": 0, "maxReplicas": 3}}


@dataclass
class Kube:
    """The API server as the controller sees it: one Deployment, scaled to zero."""

    replicas: int = 0
    statuses: list[dict[str, Any]] = field(default_factory=list)

    def deployment_state(self, namespace: str, name: str) -> tuple[int, int, str | None]:
        return self.replicas, self.replicas, None

    def apply_deployment(self, body: dict[str, Any]) -> str:
        return "replaced"

    def scale_deployment(self, namespace: str, name: str, replicas: int) -> None:
        self.replicas = replicas

    def annotate_pod(self, namespace: str, name: str, annotations: dict[str, str]) -> None: ...

    def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.statuses.append(status)


def controller_for(store: Store, kube: Kube, schedules: list[dict[str, Any]],
                   events: list[tuple[str, str, str]]) -> QueueController:
    return QueueController(kube=kube, store=store, namespace="shop", name="emails",
                           queue_name="emails", spec=parse_spec({**BASE, "schedules": schedules}),
                           post_event=lambda *event: events.append(event))


def test_spec_schedules_fire_at_zero_replicas_and_the_step_scales_up(store: Store) -> None:
    kube, events = Kube(), []
    controller = controller_for(store, kube, [
        {"name": "digest", "task": "app.tasks.digest", "every": "1s", "args": [1, "x"],
         "kwargs": {"full": True}, "priority": 5}], events)

    assert controller.run_schedules(datetime.now(UTC)) == []  # registered; first tick in 1 s
    time.sleep(1.2)
    [task_id] = controller.run_schedules(datetime.now(UTC))
    controller.step(datetime.now(UTC), {})

    record = store.get(task_id)
    assert (record.queue_name, record.task_name, record.args, record.kwargs, record.priority) == (
        "emails", "app.tasks.digest", [1, "x"], {"full": True}, 5)
    assert kube.replicas == 1
    [listed] = store.list_schedules()
    assert (listed.schedule.source, listed.last_task_id) == ("TaskQueue shop/emails", task_id)


def test_an_edited_spec_replaces_the_taskqueue_schedules_and_leaves_others(store: Store) -> None:
    kube, events = Kube(), []
    store.register_schedules([Schedule(name="from-code", task_name="app.tasks.x",
                                       every=timedelta(hours=1))], now=datetime.now(UTC))
    controller = controller_for(store, kube, [
        {"name": "a", "task": "app.tasks.a", "cron": "0 3 * * *", "timeZone": "Europe/Berlin"},
        {"name": "b", "task": "app.tasks.b", "every": "15m", "missed": "run_once"}], events)
    controller.run_schedules(datetime.now(UTC))
    assert {r.schedule.name for r in store.list_schedules()} == {"a", "b", "from-code"}

    controller.spec = parse_spec({**BASE, "schedules": [
        {"name": "b", "task": "app.tasks.b", "every": "30m"}]})
    controller.run_schedules(datetime.now(UTC))

    listed = {r.schedule.name: r.schedule.when for r in store.list_schedules()}
    assert listed == {"b": "every 1800s", "from-code": "every 3600s"}


def test_a_bad_cron_is_reported_naming_it_and_the_earlier_schedules_fire_on(store: Store) -> None:
    kube, events = Kube(), []
    controller = controller_for(store, kube, [{"name": "a", "task": "app.tasks.a", "every": "1s"}],
                                events)
    controller.run_schedules(datetime.now(UTC))
    controller.spec = parse_spec({**BASE, "schedules": [
        {"name": "a", "task": "app.tasks.a", "cron": "0 25 * * *"}]})
    time.sleep(1.2)

    fired = controller.run_schedules(datetime.now(UTC))

    assert len(fired) == 1
    assert controller.condition_reason("Schedules") == "InvalidSchedule"
    [(kind, reason, message)] = events
    assert (kind, reason) == ("Warning", "InvalidSchedule")
    assert "cron '0 25 * * *' is invalid" in message
