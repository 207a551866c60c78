from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubetasks_operator.scaling import (
    Deadline,
    Observation,
    ScaleDecision,
    ScalingSpec,
    desired_replicas,
    remember,
)

NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
PROPERTY = settings(max_examples=200, deadline=None)


def seconds(value: float) -> timedelta:
    return timedelta(seconds=value)


def due(in_seconds: float, work: float, position: int) -> Deadline:
    return Deadline(expected_at=NOW + seconds(in_seconds), work_seconds=work, position=position)


def observe(*, ready: int = 0, running: int = 0, deadlines: tuple[Deadline, ...] = (), current: int = 0,
            busy: int = 0, idle_since: datetime | None = None,
            recent: tuple[tuple[datetime, int], ...] = (), work: float = 0.0) -> Observation:
    return Observation(ready=ready, running=running, deadlines=deadlines, current_replicas=current,
                       busy_pods=busy, idle_since=idle_since, recent=recent, backlog_work_seconds=work)


def ago(value: float) -> datetime:
    return NOW - seconds(value)


DRAIN = ScalingSpec(concurrency=4, max_replicas=50, backlog_drain=seconds(60))

CASES = [
    pytest.param(
        observe(ready=200, work=960), DRAIN,
        4, 4, "backlog: 200 ready + 0 running, 960s of work to finish within 60s at 4 per pod -> 4; "
              "scaling up from 0 to 4",
        id="backlog-drains-in-time-instead-of-a-slot-per-task"),
    pytest.param(
        observe(ready=6, work=6000), DRAIN,
        2, 2, "backlog: 6 ready + 0 running at 4 per pod -> 2; scaling up from 0 to 2",
        id="backlog-drain-never-exceeds-a-slot-per-task"),
    pytest.param(
        observe(ready=200, work=20), DRAIN,
        1, 1, "backlog: 200 ready + 0 running, 20s of work to finish within 60s at 4 per pod -> 1; "
              "scaling up from 0 to 1",
        id="backlog-of-short-tasks-needs-one-pod"),
    pytest.param(
        observe(ready=200, work=20, deadlines=(due(25, 20, 200),)), DRAIN,
        1, 1, "backlog: 200 ready + 0 running, 20s of work to finish within 60s at 4 per pod -> 1; "
              "scaling up from 0 to 1",
        id="a-loose-deadline-changes-nothing"),
    pytest.param(
        observe(ready=200, work=200, deadlines=(due(20, 200, 200),)), DRAIN,
        10, 10, "deadline: 200s of work up to task 200 in 5s (due in 20s, less 15s start-up) "
                "at 4 per pod -> 10; scaling up from 0 to 10",
        id="a-tight-deadline-gets-more-pods-than-the-same-backlog-without"),
    pytest.param(
        observe(ready=120, running=8, current=2), ScalingSpec(concurrency=4, max_replicas=50),
        32, 32, "backlog: 120 ready + 8 running at 4 per pod -> 32; scaling up from 2 to 32",
        id="backlog-term"),
    pytest.param(
        observe(ready=5, current=2), ScalingSpec(concurrency=4),
        2, 2, "backlog: 5 ready + 0 running at 4 per pod -> 2",
        id="backlog-rounds-up-and-holds-when-equal"),
    pytest.param(
        observe(ready=2, deadlines=(due(75, 300, 10),)), ScalingSpec(),
        5, 5, "deadline: 300s of work up to task 10 in 60s (due in 75s, less 15s start-up) "
              "at 1 per pod -> 5; scaling up from 0 to 5",
        id="deadline-term"),
    pytest.param(
        observe(ready=2, deadlines=(due(75, 300, 10),)), ScalingSpec(pod_startup=seconds(45)),
        10, 10, "deadline: 300s of work up to task 10 in 30s",
        id="deadline-term-allows-for-pod-startup"),
    pytest.param(
        observe(ready=1, deadlines=(due(3600, 60, 2), due(100, 340, 8), due(200, 400, 9))),
        ScalingSpec(concurrency=2, max_replicas=50),
        2, 2, "deadline: 340s of work up to task 8 in 85s (due in 100s, less 15s start-up) at 2 per pod -> 2",
        id="deadline-term-names-the-binding-deadline"),
    pytest.param(
        observe(ready=1, deadlines=(due(-30, 50, 12),)), ScalingSpec(concurrency=4),
        3, 3, "urgent: task 12 in claim order is overdue by 30s; running the first 12 at 4 per pod -> 3",
        id="overdue-is-urgent"),
    pytest.param(
        observe(ready=1, deadlines=(due(10, 1, 6),)), ScalingSpec(),
        6, 6, "urgent: task 6 in claim order is due in 10s, within the 15s pod start-up",
        id="due-within-startup-is-urgent"),
    pytest.param(
        observe(deadlines=(due(75, 1000, 10),)), ScalingSpec(max_replicas=50),
        10, 10, "urgent: 1000s of work up to task 10 cannot finish in 60s even one task per slot",
        id="infeasible-work-is-urgent-not-more-pods-than-tasks"),
    pytest.param(
        observe(ready=120, running=8, current=2), ScalingSpec(concurrency=4, max_replicas=20),
        20, 20, "-> 32, clamped to max 20; scaling up from 2 to 20",
        id="clamped-to-max"),
    pytest.param(
        observe(ready=1, deadlines=(due(-1, 1, 500),)), ScalingSpec(max_replicas=7),
        7, 7, "-> 500, clamped to max 7",
        id="urgent-clamped-to-max"),
    pytest.param(
        observe(current=0), ScalingSpec(min_replicas=2),
        2, 2, "idle: nothing ready, running or due -> 0, raised to min 2; scaling up from 0 to 2",
        id="raised-to-min"),
    pytest.param(
        observe(ready=8, current=1, recent=((ago(5), 1), (ago(1), 1))), ScalingSpec(),
        8, 8, "scaling up from 1 to 8",
        id="scale-up-at-once"),
    pytest.param(
        observe(ready=3, current=5, recent=((ago(15), 5),)), ScalingSpec(),
        5, 3, "backlog: 3 ready + 0 running at 1 per pod -> 3; "
              "holding 5: scale-down waits 45s more (stabilization 60s)",
        id="scale-down-waits-for-stabilization"),
    pytest.param(
        observe(ready=3, current=6, recent=((ago(70), 6), (ago(15), 4), (ago(5), 3))), ScalingSpec(),
        4, 3, "scaling down from 6 to 4, not 3: scale-down waits 45s more (stabilization 60s)",
        id="scale-down-to-highest-recent-recommendation"),
    pytest.param(
        observe(ready=3, current=5, recent=((ago(60), 5), (ago(30), 3))), ScalingSpec(),
        3, 3, "backlog: 3 ready + 0 running at 1 per pod -> 3; scaling down from 5 to 3",
        id="scale-down-after-the-delay"),
    pytest.param(
        observe(ready=3, current=5, recent=((ago(1), 5),)), ScalingSpec(scale_down_delay=seconds(0)),
        3, 3, "scaling down from 5 to 3",
        id="no-stabilization-with-zero-delay"),
    pytest.param(
        observe(running=3, current=5, busy=3), ScalingSpec(concurrency=2),
        3, 2, "scaling down from 5 to 3, not 2: 3 pods are busy",
        id="busy-pods-floor"),
    pytest.param(
        observe(running=1, current=3, busy=3), ScalingSpec(concurrency=4),
        3, 1, "holding 3: 3 pods are busy",
        id="busy-pods-hold"),
    pytest.param(
        observe(running=6, current=8, busy=6), ScalingSpec(concurrency=8, max_replicas=4),
        4, 1, "scaling down from 8 to 4, not 1: 4 pods are busy",
        id="busy-pods-floor-clamped-to-max"),
    pytest.param(
        observe(ready=12, current=15, recent=((ago(10), 15),)), ScalingSpec(max_replicas=10),
        10, 10, "clamped to max 10; scaling down from 15 to 10",
        id="above-a-lowered-max-scales-down-at-once"),
    pytest.param(
        observe(current=1, idle_since=ago(100)), ScalingSpec(),
        1, 0, "idle: nothing ready, running or due -> 0; "
              "holding 1: scale to zero waits 200s more (idle delay 300s)",
        id="scale-to-zero-waits-for-idle-delay"),
    pytest.param(
        observe(current=1, idle_since=None), ScalingSpec(),
        1, 0, "holding 1: scale to zero waits for the queue to be idle 300s",
        id="scale-to-zero-waits-while-not-idle"),
    pytest.param(
        observe(current=3, idle_since=ago(30)), ScalingSpec(scale_down_delay=seconds(0)),
        1, 0, "scaling down from 3 to 1, not 0: scale to zero waits 270s more (idle delay 300s)",
        id="scale-down-keeps-one-pod-until-idle-delay"),
    pytest.param(
        observe(current=2, idle_since=ago(300), recent=((ago(70), 2),)), ScalingSpec(),
        0, 0, "idle: nothing ready, running or due -> 0; scaling down from 2 to 0: idle for 300s",
        id="scale-to-zero-after-idle-delay"),
    pytest.param(
        observe(current=0, idle_since=ago(5000)), ScalingSpec(),
        0, 0, "idle: nothing ready, running or due -> 0",
        id="stays-at-zero"),
    pytest.param(
        observe(ready=1, current=0, idle_since=None, recent=((ago(10), 0),)), ScalingSpec(),
        1, 1, "backlog: 1 ready + 0 running at 1 per pod -> 1; scaling up from 0 to 1",
        id="from-zero-on-first-ready-task"),
    pytest.param(
        observe(deadlines=(due(3600, 0.0, 1),), current=0, idle_since=ago(5000)),
        ScalingSpec(concurrency=8),
        1, 1, "deadline: 0s of work up to task 1 in 3585s (due in 3600s, less 15s start-up) "
              "at 8 per pod -> 1; scaling up from 0 to 1",
        id="from-zero-on-first-deadline"),
]


@pytest.mark.parametrize(("observation", "spec", "replicas", "wanted", "reason"), CASES)
def test_desired_replicas(observation: Observation, spec: ScalingSpec, replicas: int, wanted: int,
                          reason: str) -> None:
    decision = desired_replicas(observation, spec, NOW)
    assert (decision.replicas, decision.wanted) == (replicas, wanted)
    assert reason in decision.reason
    assert "\n" not in decision.reason


def test_remember_appends_and_drops_what_left_the_window() -> None:
    decision = ScaleDecision(replicas=4, wanted=3, reason="")
    recent = ((ago(90), 9), (ago(60), 8), (ago(59), 7))
    assert remember(recent, decision, NOW, seconds(60)) == ((ago(59), 7), (NOW, 3))
    assert remember((), decision, NOW, seconds(0)) == ()


def test_remembered_recommendations_hold_then_release_a_scale_down() -> None:
    spec = ScalingSpec(scale_down_delay=seconds(60))
    first = desired_replicas(observe(ready=6, current=6), spec, NOW)
    recent = remember((), first, NOW, spec.scale_down_delay)
    later = NOW + seconds(59)
    held = desired_replicas(observe(ready=2, current=6, recent=recent), spec, later)
    assert held.replicas == 6
    recent = remember(recent, held, later, spec.scale_down_delay)
    released = desired_replicas(observe(ready=2, current=6, recent=recent), spec, NOW + seconds(60))
    assert released.replicas == 2


NAIVE = datetime(2025, 1, 1, 12, 0)


@pytest.mark.parametrize(("make", "message"), [
    pytest.param(lambda: ScalingSpec(concurrency=0), "ScalingSpec.concurrency 0 is invalid: use 1 or more",
                 id="concurrency"),
    pytest.param(lambda: ScalingSpec(min_replicas=-1), "ScalingSpec.min_replicas -1 is invalid",
                 id="min-replicas"),
    pytest.param(lambda: ScalingSpec(min_replicas=5, max_replicas=3),
                 "ScalingSpec.max_replicas 3 is invalid: use at least min_replicas 5", id="min-above-max"),
    pytest.param(lambda: ScalingSpec(pod_startup=seconds(-1)),
                 "ScalingSpec.pod_startup -1s is invalid: use a duration >= 0", id="negative-duration"),
    pytest.param(lambda: observe(ready=-1), "Observation.ready -1 is invalid: use 0 or more", id="ready"),
    pytest.param(lambda: observe(running=-2), "Observation.running -2 is invalid", id="running"),
    pytest.param(lambda: observe(current=-1), "Observation.current_replicas -1 is invalid", id="current"),
    pytest.param(lambda: observe(busy=-1), "Observation.busy_pods -1 is invalid", id="busy"),
    pytest.param(lambda: observe(idle_since=NAIVE), "Observation.idle_since 2025-01-01T12:00:00 is naive",
                 id="naive-idle-since"),
    pytest.param(lambda: observe(recent=((NAIVE, 1),)), r"Observation.recent\[0\] time .* is naive",
                 id="naive-recent"),
    pytest.param(lambda: observe(recent=((NOW, -1),)), r"Observation.recent\[0\] replicas -1 is invalid",
                 id="negative-recent"),
    pytest.param(lambda: Deadline(expected_at=NAIVE, work_seconds=1, position=1),
                 "Deadline.expected_at .* is naive", id="naive-deadline"),
    pytest.param(lambda: due(10, -1, 1), "Deadline.work_seconds -1 is invalid", id="negative-work"),
    pytest.param(lambda: due(10, math.nan, 1), "Deadline.work_seconds nan is invalid", id="nan-work"),
    pytest.param(lambda: due(10, 1, 0), "Deadline.position 0 is invalid: use 1 or more", id="position"),
    pytest.param(lambda: desired_replicas(observe(), ScalingSpec(), NAIVE), "now .* is naive",
                 id="naive-now"),
    pytest.param(lambda: remember((), ScaleDecision(replicas=1, wanted=1, reason=""), NAIVE, seconds(60)),
                 "now .* is naive", id="naive-now-in-remember"),
])
def test_bad_inputs_are_refused(make: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


# Properties, over generated specs and observations.

@st.composite
def specs(draw: st.DrawFn, *, max_replicas: int | None = None) -> ScalingSpec:
    low = draw(st.integers(0, 10))
    return ScalingSpec(
        min_replicas=low,
        max_replicas=max_replicas if max_replicas is not None else low + draw(st.integers(0, 40)),
        concurrency=draw(st.integers(1, 16)),
        scale_down_delay=seconds(draw(st.integers(0, 600))),
        scale_to_zero_delay=seconds(draw(st.integers(0, 1200))),
        pod_startup=seconds(draw(st.integers(0, 120))),
        backlog_drain=seconds(draw(st.sampled_from([0, 0, 30, 60, 600]))))


@st.composite
def deadline_lists(draw: st.DrawFn) -> tuple[Deadline, ...]:
    """Deadlines in claim order: cumulative work and positions, deadlines anywhere in time."""
    deadlines, work, position = [], 0.0, 0
    for _ in range(draw(st.integers(0, 6))):
        work += draw(st.floats(0, 3600, allow_nan=False))
        position += draw(st.integers(1 if position == 0 else 0, 20))
        # Half of them within a few minutes, where start-up and slack decide the most.
        offset = draw(st.integers(-600_000_000, 7_200_000_000) | st.integers(0, 300_000_000))
        at = NOW + offset * MICROSECOND
        deadlines.append(Deadline(expected_at=at, work_seconds=work, position=position))
    return tuple(deadlines)


@st.composite
def observations(draw: st.DrawFn, *, most_ready: int = 500) -> Observation:
    recent = draw(st.lists(st.tuples(st.integers(0, 1200), st.integers(0, 60)), max_size=5))
    idle_for = draw(st.none() | st.integers(0, 2000))
    return observe(
        ready=draw(st.integers(0, most_ready)), running=draw(st.integers(0, most_ready // 5)),
        deadlines=draw(deadline_lists()),
        current=draw(st.integers(0, 60)), busy=draw(st.integers(0, 60)),
        idle_since=None if idle_for is None else ago(idle_for),
        recent=tuple((ago(age), replicas) for age, replicas in recent),
        work=draw(st.floats(0, 100_000, allow_nan=False)))


@PROPERTY
@given(observation=observations(), spec=specs())
def test_replicas_stay_within_min_and_max(observation: Observation, spec: ScalingSpec) -> None:
    decision = desired_replicas(observation, spec, NOW)
    assert spec.min_replicas <= decision.replicas <= spec.max_replicas
    assert spec.min_replicas <= decision.wanted <= spec.max_replicas


@PROPERTY
@given(observation=observations(), spec=specs(), more_ready=st.integers(0, 300),
       more_running=st.integers(0, 300))
def test_more_backlog_never_means_fewer_replicas(observation: Observation, spec: ScalingSpec,
                                                 more_ready: int, more_running: int) -> None:
    busier = dataclasses.replace(observation, ready=observation.ready + more_ready,
                                 running=observation.running + more_running)
    before, after = desired_replicas(observation, spec, NOW), desired_replicas(busier, spec, NOW)
    assert after.replicas >= before.replicas
    assert after.wanted >= before.wanted


@PROPERTY
@given(observation=observations(most_ready=20), spec=specs(), earlier=st.integers(0, 7_200_000_000))
def test_earlier_deadlines_never_mean_fewer_replicas(observation: Observation, spec: ScalingSpec,
                                                     earlier: int) -> None:
    shifted = dataclasses.replace(observation, deadlines=tuple(
        dataclasses.replace(d, expected_at=d.expected_at - earlier * MICROSECOND)
        for d in observation.deadlines))
    before, after = desired_replicas(observation, spec, NOW), desired_replicas(shifted, spec, NOW)
    assert after.replicas >= before.replicas
    assert after.wanted >= before.wanted


@PROPERTY
@given(spec=specs(max_replicas=1_000_000), work=st.floats(0, 36_000), position=st.integers(1, 50),
       moments=st.lists(st.integers(0, 1_200_000_000), min_size=2, max_size=10))
def test_a_deadline_never_asks_for_fewer_replicas_as_it_draws_near(
        spec: ScalingSpec, work: float, position: int, moments: list[int]) -> None:
    deadline = due(600, work, position)
    wanted = [desired_replicas(observe(deadlines=(deadline,)), spec, NOW + moment * MICROSECOND).wanted
              for moment in sorted(moments)]
    assert wanted == sorted(wanted)
    assert wanted[-1] <= max(spec.min_replicas, -(-position // spec.concurrency))  # never more than tasks


@st.composite
def feasible_deadlines(draw: st.DrawFn, startup: timedelta) -> tuple[Deadline, ...]:
    """Deadlines each of which can be met: slack > 0 and work <= position * slack."""
    drawn, position = [], 0
    for _ in range(draw(st.integers(1, 6))):
        position += draw(st.integers(1 if position == 0 else 0, 20))
        slack_us = draw(st.integers(1, 7_200_000_000))
        work = draw(st.floats(0, 1)) * position * slack_us / 1_000_000
        while Fraction(work) * 1_000_000 > position * slack_us:
            work = math.nextafter(work, 0)
        drawn.append((slack_us, work, position))
    deadlines, least_later = [], math.inf
    for slack_us, work, position in reversed(drawn):  # keep the work cumulative: non-decreasing
        least_later = min(least_later, work)
        deadlines.append(Deadline(expected_at=NOW + startup + slack_us * MICROSECOND,
                                  work_seconds=least_later, position=position))
    return tuple(reversed(deadlines))


@PROPERTY
@given(data=st.data(), spec=specs(), ready=st.integers(0, 50), current=st.integers(0, 60))
def test_feasible_deadlines_get_the_slots_to_meet_them(data: st.DataObject, spec: ScalingSpec, ready: int,
                                                       current: int) -> None:
    deadlines = data.draw(feasible_deadlines(spec.pod_startup))
    decision = desired_replicas(observe(ready=ready, deadlines=deadlines, current=current), spec, NOW)
    for deadline in deadlines:
        slack_us = (deadline.expected_at - NOW - spec.pod_startup) // MICROSECOND
        assert slack_us > 0
        work_us = Fraction(deadline.work_seconds) * 1_000_000
        if decision.wanted < spec.max_replicas:  # not clamped by max
            assert decision.wanted * spec.concurrency * slack_us >= work_us
            assert decision.replicas * spec.concurrency * slack_us >= work_us
        else:
            assert decision.replicas == spec.max_replicas


@PROPERTY
@given(spec=specs(), ready=st.integers(0, 200), running=st.integers(0, 50),
       offsets=st.lists(st.integers(-600, 3600), max_size=4), current=st.integers(0, 60),
       busy=st.integers(0, 60), steps=st.lists(st.integers(1, 900), min_size=2, max_size=12))
def test_a_steady_backlog_does_not_flap(*, spec: ScalingSpec, ready: int, running: int, offsets: list[int],
                                        current: int, busy: int, steps: list[int]) -> None:
    # Idle long enough already when empty, so that nothing but the backlog could move the count.
    idle_since = None if ready + running else NOW - spec.scale_to_zero_delay
    now, counts = NOW, []
    recent: tuple[tuple[datetime, int], ...] = ()
    for step in steps:
        deadlines = tuple(Deadline(expected_at=now + seconds(offset), work_seconds=60.0 * (k + 1),
                                   position=k + 1) for k, offset in enumerate(sorted(offsets)))
        observation = Observation(ready=ready, running=running, deadlines=deadlines, current_replicas=current,
                                  busy_pods=min(busy, current), idle_since=idle_since, recent=recent)
        decision = desired_replicas(observation, spec, now)
        recent = remember(recent, decision, now, spec.scale_down_delay)
        current = decision.replicas
        counts.append(current)
        now += seconds(step)
    assert counts == [counts[0]] * len(counts)


@PROPERTY
@given(observation=observations(), spec=specs(), more_work=st.floats(0, 100_000, allow_nan=False))
def test_more_estimated_work_never_means_fewer_replicas(observation: Observation, spec: ScalingSpec,
                                                        more_work: float) -> None:
    heavier = dataclasses.replace(observation,
                                  backlog_work_seconds=observation.backlog_work_seconds + more_work)
    assert (desired_replicas(heavier, spec, NOW).replicas
            >= desired_replicas(observation, spec, NOW).replicas)
