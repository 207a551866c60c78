"""The operator's queue metrics: the deadline-at-risk count, the oldest READY task's age, the
error counters and the build info, as Prometheus reads them from the operator's registry."""

from __future__ import annotations

import importlib.metadata
from datetime import timedelta

import pytest
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from kubetasks.records import DeadlineWork
from kubetasks_operator import queue_metrics
from kubetasks_operator.controller import QueueController
from kubetasks_operator.scaling import Deadline
from kubetasks_operator.spec import parse_spec
from tests.unit.test_queue_controller import NOW, SPEC, FakeKube, FakeStore


def deadline(in_seconds: float, work_seconds: float, position: int) -> Deadline:
    return Deadline(expected_at=NOW + timedelta(seconds=in_seconds), work_seconds=work_seconds,
                    position=position)


@pytest.mark.parametrize(("deadlines", "slots", "at_risk"), [
    # 10 s of work up to task 4, due in 4 s: 4 slots finish it in 2.5 s, 2 slots in 5 s.
    ([deadline(4, 10, 4)], 4, 0),
    ([deadline(4, 10, 4)], 2, 1),
    # One task cannot use more than one slot: 8 s of work due in 5 s is at risk however many.
    ([deadline(5, 8, 1)], 100, 1),
    # Without a worker, every deadline ahead with work before it is at risk.
    ([deadline(60, 1, 1), deadline(60, 0, 1)], 0, 1),
    # A deadline already passed is missed (overdue), not at risk.
    ([deadline(-1, 100, 1)], 1, 0),
    ([], 4, 0),
])
def test_deadlines_at_risk_counts_those_the_ready_slots_cannot_meet(
        deadlines: list[Deadline], slots: int, at_risk: int) -> None:
    assert queue_metrics.deadlines_at_risk(deadlines, NOW, slots) == at_risk


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_a_step_publishes_the_oldest_ready_age_and_the_deadlines_at_risk() -> None:
    store, kube = FakeStore(), FakeKube()
    controller = QueueController(kube=kube, store=store, namespace="shop", name="emails",
                                 queue_name="emails", spec=parse_spec(SPEC),
                                 post_event=lambda *event: None)
    labels = {"namespace": "shop", "taskqueue": "emails"}
    store.set_queue(ready=3)
    store.oldest_ready = 42.5
    kube.ready = 1  # one pod of concurrency 2
    # 30 s of work before a task due in 10 s: two slots need 15 s.
    store.deadlines = [DeadlineWork(expected_at=NOW + timedelta(seconds=10), work_seconds=30.0,
                                    position=3)]
    controller.step(NOW, live_pods={})
    assert sample("kubetasks_operator_oldest_ready_age_seconds", **labels) == 42.5
    assert sample("kubetasks_operator_deadlines_at_risk", **labels) == 1

    store.set_queue(ready=0)
    store.deadlines = []
    controller.step(NOW + timedelta(seconds=5), live_pods={})
    assert sample("kubetasks_operator_oldest_ready_age_seconds", **labels) == 0
    assert sample("kubetasks_operator_deadlines_at_risk", **labels) == 0


def test_a_taskqueue_s_counters_are_at_zero_before_their_first_increment() -> None:
    QueueController(kube=FakeKube(), store=FakeStore(), namespace="fresh", name="q", queue_name="q",
                    spec=parse_spec(SPEC), post_event=lambda *event: None)
    for signal in ("pod", "sweep"):
        assert sample("kubetasks_operator_requeued_tasks_total", namespace="fresh", taskqueue="q",
                      signal=signal) == 0
    for kind in ("reconcile", "database", "kubernetes_api", "other"):
        assert sample("kubetasks_operator_errors_total", namespace="fresh", taskqueue="q",
                      kind=kind) == 0


def test_errors_are_counted_by_kind() -> None:
    before = sample("kubetasks_operator_errors_total", namespace="n", taskqueue="q",
                    kind="database") or 0
    queue_metrics.count_error("n", "q", "database")
    queue_metrics.count_error("n", "q", "database")
    assert sample("kubetasks_operator_errors_total", namespace="n", taskqueue="q",
                  kind="database") == before + 2


def test_the_scrape_has_the_build_info_and_no_created_series() -> None:
    queue_metrics.count_error("n", "q", "reconcile")
    queue_metrics.REQUEUED.labels("n", "q", "pod").inc()
    text = generate_latest(REGISTRY).decode()
    names = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    version = importlib.metadata.version("kubetasks")
    assert sample("kubetasks_operator_build_info", version=version) == 1
    assert {"kubetasks_operator_errors_total", "kubetasks_operator_requeued_tasks_total",
            "process_cpu_seconds_total"} <= names
    assert not [n for n in names if n.endswith("_created")]
