"""The scaling policy against simulated workloads (bench/scaling_simulation.py): deadlines met and
no busy pod removed, where a policy blind to running ages or a KEDA-style one falls short."""

from __future__ import annotations

import pytest
from bench.scaling_simulation import KedaHpa, Kubetasks, Workload, simulate, workloads

WORKLOADS = {w.name: w for w in workloads(seed=7)}


def workload(prefix: str) -> Workload:
    (found,) = [w for name, w in WORKLOADS.items() if name.startswith(prefix)]
    return found


@pytest.mark.parametrize("prefix", ["first burst of a new", "40 long tasks", "tight deadlines"])
def test_kubetasks_meets_every_deadline_without_removing_a_busy_pod(prefix: str) -> None:
    outcome = simulate(workload(prefix), Kubetasks)
    assert (outcome.met, outcome.busy_removed, outcome.unfinished) == (outcome.deadlines, 0, 0)


def test_without_the_running_age_a_first_burst_of_long_tasks_misses_deadlines() -> None:
    outcome = simulate(workload("first burst of a new"), lambda spec: Kubetasks(spec, age_bound=False))
    assert outcome.met < outcome.deadlines


def test_a_keda_style_policy_removes_busy_pods_and_misses_long_tasks_deadlines() -> None:
    outcome = simulate(workload("40 long tasks"), KedaHpa)
    assert outcome.busy_removed > 0
    assert outcome.met < outcome.deadlines


def test_knowing_durations_from_the_first_start_is_too_late_for_a_first_burst() -> None:
    # The reference for the worker-seconds gap on this workload: exact durations, but only from
    # the moment a task of the name first runs, which is when any evidence of them exists.
    outcome = simulate(workload("first burst of a new"),
                       lambda spec: Kubetasks(spec, exact_from_start=True))
    assert outcome.met < outcome.deadlines
    assert outcome.worker_seconds > simulate(workload("first burst of a new"),
                                             lambda spec: Kubetasks(spec, exact=True)).worker_seconds
