"""A paused or limited queue, as the operator sees it: the scaling policy (pure) and one
TaskQueue's controller writing the spec's pause and limits to the database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kubetasks.records import QueueSettings
from kubetasks_operator.controller import QueueController
from kubetasks_operator.scaling import Observation, ScalingSpec, desired_replicas
from kubetasks_operator.spec import InvalidSpec, parse_spec
from tests.unit.test_queue_controller import SPEC, FakeKube, FakeStore

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
POLICY = ScalingSpec(concurrency=4, max_replicas=50)


def seen(**overrides: Any) -> Observation:
    values: dict[str, Any] = dict(ready=400, running=0, deadlines=(), current_replicas=2,
                                  busy_pods=2, idle_since=None, backlog_work_seconds=400.0)
    return Observation(**{**values, **overrides})


def test_a_paused_queue_never_scales_up_and_keeps_its_busy_pods() -> None:
    decision = desired_replicas(seen(paused=True, current_replicas=5, busy_pods=2), POLICY, NOW)
    assert decision.replicas == 2
    assert decision.reason == "paused: no new claims; scaling down from 5 to 2 (keeping 2 busy pods)"

    at_zero = desired_replicas(seen(paused=True, current_replicas=0, busy_pods=0), POLICY, NOW)
    assert at_zero.replicas == 0 and at_zero.reason.startswith("paused: no new claims; holding 0")


def test_the_cap_limits_the_pods_to_those_it_keeps_busy() -> None:
    decision = desired_replicas(seen(max_running=6), POLICY, NOW)
    assert decision.replicas == 2  # 6 slots at 4 per pod
    assert "limited by maxRunning 6 at 4 per pod -> 2" in decision.reason

    roomy = desired_replicas(seen(ready=3, max_running=100, current_replicas=0, busy_pods=0),
                             POLICY, NOW)
    assert roomy.replicas == 1 and "limited" not in roomy.reason


def test_the_rate_limits_the_pods_to_those_it_keeps_busy() -> None:
    # 2 starts/s of 10 s tasks keep 20 slots busy: 5 pods of 4, not 100.
    decision = desired_replicas(seen(starts_per_second=2.0, backlog_work_seconds=4000.0),
                                POLICY, NOW)
    assert decision.replicas == 5 and "limited by rate 2/s x 10s per task" in decision.reason


def test_min_replicas_still_holds_under_a_cap() -> None:
    policy = ScalingSpec(concurrency=4, min_replicas=3, max_replicas=50)
    assert desired_replicas(seen(max_running=1), policy, NOW).replicas == 3


def controller_for(spec: dict[str, Any], store: FakeStore, kube: FakeKube) -> QueueController:
    return QueueController(kube=kube, store=store, namespace="shop", name="emails",
                           queue_name="emails", spec=parse_spec({**SPEC, **spec}),
                           post_event=lambda *event: None)


def test_the_spec_is_written_to_the_database_once_and_the_status_shows_it() -> None:
    store, kube = FakeStore(), FakeKube(replicas=3)
    store.set_queue(ready=10, running=2)
    store.running_by_uid = {"uid-a": 2}
    controller = controller_for({"paused": True, "limits": {
        "maxRunning": 5, "rate": {"starts": 10, "period": "1m"}}}, store, kube)

    decision = controller.step(NOW, live_pods={"uid-a": "pod-a"})

    assert store.settings["emails"] == QueueSettings("emails", True, 5, 10, timedelta(minutes=1))
    assert decision.replicas == 1 and kube.calls[-1] == ("scale", 1)
    assert ("annotate", ("pod-a", "200")) in kube.calls  # the busy pod is the one kept
    status = kube.statuses[-1]
    assert (status["paused"], status["maxRunning"], status["rate"]) == (True, 5, "10/60s")

    store.set_paused("emails", False)  # kubetasks resume: lasts until the spec changes
    controller.step(NOW + timedelta(seconds=2), live_pods={"uid-a": "pod-a"})
    assert not store.settings["emails"].paused and kube.statuses[-1]["paused"] is False


def test_a_rate_without_a_period_or_a_zero_period_is_refused() -> None:
    with pytest.raises(InvalidSpec, match="spec.limits.rate.period"):
        parse_spec({**SPEC, "limits": {"rate": {"starts": 3}}})
    with pytest.raises(InvalidSpec, match="spec.limits.rate.period"):
        parse_spec({**SPEC, "limits": {"rate": {"starts": 3, "period": "0s"}}})
