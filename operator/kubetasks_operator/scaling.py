"""The scaling policy: how many worker pods a queue needs, as a pure function of what was observed.

``desired_replicas`` reads no clock and touches no API: the operator passes in the counts, the
deadlines, the spec and the time, and applies the ``ScaleDecision``; tests drive it through any history.

* Backlog term: enough pods to finish the work due now (``backlog_work_seconds``, the estimated
  run time of the ready and running tasks) within ``backlog_drain``:
  ``ceil(work / (concurrency * backlog_drain))``, at least 1 and at most a slot for every task,
  ``ceil((ready + running) / concurrency)``. A ``backlog_drain`` of 0 means that slot per task.
  Draining in a bounded time, rather than starting a pod per few tasks, keeps a burst of short
  tasks from asking for hundreds of pods; deadlines ask for more when they need it.
* Deadline term: for each ready task k with a deadline, ``W_k`` the estimated work up to and
  including it in claim order and ``slack_k = expected_at_k - now - pod_startup``, enough pods to
  do that work in time: ``ceil(W_k / (concurrency * slack_k))``. A task runs in one slot, so more
  pods than tasks up to k cannot help: the term is capped at ``ceil(position_k / concurrency)``.
  A deadline that cannot be met even so (``slack_k <= 0``, or ``W_k > position_k * slack_k``) is
  urgent and gets exactly that cap: everything up to it runs at once.
  Pod start-up is subtracted even when enough pods already run. The term then depends on the
  queue alone, not on the replica count it sets; otherwise running pods would lower the need, the
  policy would scale down, and the missing start-up time would raise it again: a loop that flaps.
  The price is scaling up at most one start-up time early.
  The deadline term raises the count above the backlog term when tasks must finish sooner than
  ``backlog_drain`` allows, and for deadlines of tasks not yet counted as ready
  (``Store.queue_statistics``' horizon): pods are started ahead of the tasks coming due.
* ``wanted`` is the larger term, clamped to ``[min_replicas, max_replicas]``. Anything ready or
  due wants at least one pod, so a queue at zero scales up on its first task.
* Up at once: a missed deadline costs more than an idle pod.
* Down only to the highest recommendation of the last ``scale_down_delay``, this one included
  (as the HPA stabilizes), so a backlog dipping between bursts does not churn pods; and never
  below the busy pods, since removing one puts its tasks back to run again.
* To zero only after the queue has been idle for ``scale_to_zero_delay``; until then one pod
  stays, so a trickle of tasks does not pay a pod start-up each time.
* Queue limits (held by the database, observed with the queue): no more pods than the cap on
  RUNNING tasks can keep busy, ``ceil(max_running / concurrency)``, nor than the rate of starts
  can (``starts_per_second`` times the mean run time of the ready and running tasks, in slots);
  ``min_replicas`` still holds.
* A paused queue claims nothing: it never scales up, and keeps only its busy pods (at once,
  without the delays: no task can come to an idle pod until the queue is resumed).

The caller keeps the recommendations with ``remember`` (persist them, e.g. in the status, to
keep the stabilization across operator restarts).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

Recommendations = tuple[tuple[datetime, int], ...]

_MICROSECOND = timedelta(microseconds=1)
_MICROSECONDS_PER_SECOND = 1_000_000


@dataclass(frozen=True, slots=True, kw_only=True)
class Deadline:
    """One READY task with a deadline, in claim order.

    ``work_seconds`` is the estimated work of this task and of every task claimed before it;
    ``position`` counts those tasks, this one included.
    """

    expected_at: datetime
    work_seconds: float
    position: int

    def __post_init__(self) -> None:
        _require_aware("Deadline.expected_at", self.expected_at)
        if not (math.isfinite(self.work_seconds) and self.work_seconds >= 0):
            raise ValueError(
                f"Deadline.work_seconds {self.work_seconds!r} is invalid: use finite seconds >= 0")
        _require_at_least("Deadline.position", self.position, 1)


@dataclass(frozen=True, slots=True, kw_only=True)
class ScalingSpec:
    """The scaling part of a TaskQueue spec."""

    min_replicas: int = 0
    max_replicas: int = 10
    concurrency: int = 1
    scale_down_delay: timedelta = timedelta(seconds=60)
    scale_to_zero_delay: timedelta = timedelta(seconds=300)
    pod_startup: timedelta = timedelta(seconds=15)
    backlog_drain: timedelta = timedelta(0)

    def __post_init__(self) -> None:
        _require_at_least("ScalingSpec.min_replicas", self.min_replicas, 0)
        if self.max_replicas < self.min_replicas:
            raise ValueError(f"ScalingSpec.max_replicas {self.max_replicas} is invalid: "
                             f"use at least min_replicas {self.min_replicas}")
        _require_at_least("ScalingSpec.concurrency", self.concurrency, 1)
        for name in ("scale_down_delay", "scale_to_zero_delay", "pod_startup", "backlog_drain"):
            value: timedelta = getattr(self, name)
            if value < timedelta(0):
                raise ValueError(f"ScalingSpec.{name} {_seconds(value)} is invalid: use a duration >= 0")


@dataclass(frozen=True, slots=True, kw_only=True)
class Observation:
    """What the operator saw of a queue and its Deployment.

    ``idle_since`` is when the queue last became empty (nothing ready, nothing running), None if
    it is not empty; ``recent`` holds earlier ``ScaleDecision.wanted`` values, kept with ``remember``;
    ``backlog_work_seconds`` is the estimated run time of the ready and running tasks.
    """

    ready: int
    running: int
    deadlines: tuple[Deadline, ...]
    current_replicas: int
    busy_pods: int
    idle_since: datetime | None
    recent: Recommendations = ()
    backlog_work_seconds: float = 0.0
    paused: bool = False
    max_running: int | None = None
    starts_per_second: float | None = None

    def __post_init__(self) -> None:
        if self.max_running is not None:
            _require_at_least("Observation.max_running", self.max_running, 1)
        if self.starts_per_second is not None and not (
                math.isfinite(self.starts_per_second) and self.starts_per_second > 0):
            raise ValueError(f"Observation.starts_per_second {self.starts_per_second!r} is "
                             "invalid: use a finite rate > 0")
        for name in ("ready", "running", "current_replicas", "busy_pods"):
            _require_at_least(f"Observation.{name}", getattr(self, name), 0)
        if not (math.isfinite(self.backlog_work_seconds) and self.backlog_work_seconds >= 0):
            raise ValueError(f"Observation.backlog_work_seconds {self.backlog_work_seconds!r} is "
                             "invalid: use finite seconds >= 0")
        if self.idle_since is not None:
            _require_aware("Observation.idle_since", self.idle_since)
        for index, (at, replicas) in enumerate(self.recent):
            _require_aware(f"Observation.recent[{index}] time", at)
            _require_at_least(f"Observation.recent[{index}] replicas", replicas, 0)


@dataclass(frozen=True, slots=True, kw_only=True)
class ScaleDecision:
    """``replicas`` to set; ``wanted``, the recommendation before stabilization, to ``remember``;
    ``reason``, one line for Events and status."""

    replicas: int
    wanted: int
    reason: str


def desired_replicas(observation: Observation, spec: ScalingSpec, now: datetime) -> ScaleDecision:
    """How many worker pods the queue should have now, and why.

    >>> from datetime import UTC
    >>> now = datetime(2025, 1, 1, tzinfo=UTC)
    >>> seen = Observation(ready=120, running=8, deadlines=(), current_replicas=2, busy_pods=2,
    ...                    idle_since=None)
    >>> desired_replicas(seen, ScalingSpec(concurrency=4, max_replicas=50), now).reason
    'backlog: 120 ready + 8 running at 4 per pod -> 32; scaling up from 2 to 32'
    """
    _require_aware("now", now)
    if observation.paused:
        return _paused(observation)
    raw, why = _backlog_term(observation, spec)
    for deadline in observation.deadlines:  # the first of equals: backlog, then claim order
        replicas, explain = _deadline_term(deadline, spec, now)
        if replicas > raw:
            raw, why = replicas, explain()
    limit = _limit(observation, spec)
    if limit is not None and limit[0] < raw:
        raw, why = limit[0], f"{why}, limited by {limit[1]}"
    wanted = min(max(raw, spec.min_replicas), spec.max_replicas)
    if wanted > raw:
        why += f", raised to min {wanted}"
    elif wanted < raw:
        why += f", clamped to max {wanted}"
    current = observation.current_replicas
    if wanted >= current:
        action = f"; scaling up from {current} to {wanted}" if wanted > current else ""
        return ScaleDecision(replicas=wanted, wanted=wanted, reason=why + action)
    replicas, action = _scale_down(observation, spec, now, wanted)
    return ScaleDecision(replicas=replicas, wanted=wanted, reason=f"{why}; {action}")


def remember(recent: Iterable[tuple[datetime, int]], decision: ScaleDecision, now: datetime,
             window: timedelta) -> Recommendations:
    """``recent`` with this decision's recommendation added and those older than ``window``
    (the spec's ``scale_down_delay``) dropped: the next ``Observation.recent``."""
    _require_aware("now", now)
    return tuple((at, replicas) for at, replicas in (*recent, (now, decision.wanted))
                 if now - at < window)


def _backlog_term(observation: Observation, spec: ScalingSpec) -> tuple[int, str]:
    total = observation.ready + observation.running
    if total == 0:
        return 0, "idle: nothing ready, running or due -> 0"
    slots = _ceil_div(total, spec.concurrency)
    counts = f"backlog: {observation.ready} ready + {observation.running} running"
    drain_us = spec.backlog_drain // _MICROSECOND
    by_work = (max(1, _ceil_work(observation.backlog_work_seconds, spec.concurrency * drain_us))
               if drain_us > 0 else slots)
    if by_work >= slots:
        return slots, f"{counts} at {spec.concurrency} per pod -> {slots}"
    return by_work, (f"{counts}, {_seconds(observation.backlog_work_seconds)} of work to finish "
                     f"within {_seconds(spec.backlog_drain)} at {spec.concurrency} per pod -> {by_work}")


def _deadline_term(deadline: Deadline, spec: ScalingSpec,
                   now: datetime) -> tuple[int, Callable[[], str]]:
    """The term's replicas, and its reason, written only for the term that decides: a queue may
    pass a thousand deadlines every step."""
    concurrency, position = spec.concurrency, deadline.position
    all_at_once = _ceil_div(position, concurrency)
    due_in = deadline.expected_at - now
    slack = due_in - spec.pod_startup
    slack_us = slack // _MICROSECOND

    def at_once() -> str:
        return f"; running the first {position} at {concurrency} per pod -> {all_at_once}"

    if slack_us <= 0:
        def overdue() -> str:
            if due_in < timedelta(0):
                when = f"overdue by {_seconds(-due_in)}"
            elif due_in == timedelta(0):
                when = "due now"
            else:
                when = f"due in {_seconds(due_in)}, within the {_seconds(spec.pod_startup)} pod start-up"
            return f"urgent: task {position} in claim order is {when}{at_once()}"
        return all_at_once, overdue
    if _ceil_work(deadline.work_seconds, slack_us) > position:  # even one task per slot is late
        return all_at_once, lambda: (
            f"urgent: {_seconds(deadline.work_seconds)} of work up to task {position} "
            f"cannot finish in {_seconds(slack)} even one task per slot{at_once()}")
    replicas = max(1, _ceil_work(deadline.work_seconds, concurrency * slack_us))
    return replicas, lambda: (
        f"deadline: {_seconds(deadline.work_seconds)} of work up to task {position} "
        f"in {_seconds(slack)} (due in {_seconds(due_in)}, less {_seconds(spec.pod_startup)} "
        f"start-up) at {concurrency} per pod -> {replicas}")


def _scale_down(observation: Observation, spec: ScalingSpec, now: datetime,
                wanted: int) -> tuple[int, str]:
    """Replicas below the current count, no lower than what holds them up, and the action."""
    current = observation.current_replicas
    floors = [(wanted, "")]
    window = spec.scale_down_delay
    # Recommendations made under an earlier spec may exceed today's maximum.
    recent = [(at, min(replicas, spec.max_replicas)) for at, replicas in observation.recent
              if now - at < window]
    held = max((replicas for _, replicas in recent), default=0)
    if held > wanted:
        expires = max(at for at, replicas in recent if replicas == held) + window
        floors.append((held, f"scale-down waits {_wait(expires - now)} more "
                             f"(stabilization {_seconds(window)})"))
    busy = min(observation.busy_pods, spec.max_replicas)
    if busy > wanted:
        floors.append((busy, "1 pod is busy" if busy == 1 else f"{busy} pods are busy"))
    idle_for = None if observation.idle_since is None else now - observation.idle_since
    if wanted == 0 and spec.max_replicas >= 1:
        if idle_for is None:
            floors.append((1, "scale to zero waits for the queue to be idle "
                              f"{_seconds(spec.scale_to_zero_delay)}"))
        elif idle_for < spec.scale_to_zero_delay:
            floors.append((1, f"scale to zero waits {_wait(spec.scale_to_zero_delay - idle_for)} more "
                              f"(idle delay {_seconds(spec.scale_to_zero_delay)})"))
    target, why = max(floors, key=lambda floor: floor[0])
    if target >= current:
        return current, f"holding {current}: {why}"
    if target > wanted:
        return target, f"scaling down from {current} to {target}, not {wanted}: {why}"
    if target == 0 and idle_for is not None:
        return 0, f"scaling down from {current} to 0: idle for {_seconds(idle_for)}"
    return target, f"scaling down from {current} to {target}"


def _paused(observation: Observation) -> ScaleDecision:
    current, busy = observation.current_replicas, observation.busy_pods
    keep = min(current, busy)
    pods = "1 busy pod" if keep == 1 else f"{keep} busy pods"
    action = f"scaling down from {current} to {keep}" if keep < current else f"holding {current}"
    return ScaleDecision(replicas=keep, wanted=0,
                         reason=f"paused: no new claims; {action} (keeping {pods})")


def _limit(observation: Observation, spec: ScalingSpec) -> tuple[int, str] | None:
    """The most pods the queue's limits keep busy, and why; None without limits."""
    limits = []
    if observation.max_running is not None:
        pods = _ceil_div(observation.max_running, spec.concurrency)
        limits.append((pods, f"maxRunning {observation.max_running} at {spec.concurrency} "
                             f"per pod -> {pods}"))
    tasks = observation.ready + observation.running
    if observation.starts_per_second is not None and tasks:
        mean = observation.backlog_work_seconds / tasks
        slots = observation.starts_per_second * mean  # Little's law: starts/s x seconds each
        pods = max(1, math.ceil(slots / spec.concurrency))
        limits.append((pods, f"rate {observation.starts_per_second:g}/s x {_seconds(mean)} per "
                             f"task -> {slots:.1f} busy slots at {spec.concurrency} per pod -> {pods}"))
    return min(limits) if limits else None


def _ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


def _ceil_work(seconds: float, microseconds: int) -> int:
    """``ceil(seconds / microseconds)`` with the seconds in microseconds, exactly (a float's
    ratio is exact), so that the replicas returned provably cover the work."""
    numerator, denominator = seconds.as_integer_ratio()
    return _ceil_div(numerator * _MICROSECONDS_PER_SECOND, denominator * microseconds)


def _seconds(value: timedelta | float) -> str:
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    return f"{seconds:.1f}".removesuffix(".0") + "s"


def _wait(value: timedelta) -> str:
    return f"{math.ceil(value.total_seconds())}s"


def _require_aware(name: str, value: datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} {value.isoformat()} is naive: use an aware datetime, "
                         "e.g. datetime.now(UTC)")


def _require_at_least(name: str, value: int, least: int) -> None:
    if value < least:
        raise ValueError(f"{name} {value} is invalid: use {least} or more")
