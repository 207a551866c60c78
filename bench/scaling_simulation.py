"""The scaling policy in a simulation of its own: workloads against kubetasks and a KEDA+HPA policy.

A discrete-time model (one step per second) of a queue, its worker pods and the loop that sizes
them. kubetasks is the real ``desired_replicas`` and ``remember`` of ``kubetasks_operator.scaling``,
fed the way the operator feeds them: every ``pollIntervalSeconds`` and on each enqueue (NOTIFY),
with the work estimated from the mean durations it has learned (1 s for a task name that never
finished, raised to the age of its oldest running task, a lower bound on its duration), and
scale-in choosing idle pods first (the pod-deletion-cost annotation). These policies run each
workload:

* ``kubetasks``: the operator as built (and ``kubetasks, no age bound``: without the running ages).
* ``edf-exact``: the same policy told the true duration of every task at enqueue: an
  earliest-deadline-first sizing with exact estimates, the reference for worker-seconds.
* ``edf, exact from first start``: the same policy told a task name's true durations as soon
  as one task of that name starts (1 s before): the best any policy can know that learns
  durations from the tasks themselves, as the operator must, since no evidence of a new name's
  duration exists before one of its tasks runs.
* ``keda-hpa``: what KEDA's PostgreSQL scaler and the HPA do: every 30 s, replicas =
  ceil(ready + running / target) with the target the pod's concurrency, up at once, down to the
  highest recommendation of the last 300 s, to zero after a 300 s cooldown, and scale-in picking
  pods as a ReplicaSet does (not yet ready first, then the newest), busy or not.

Pods take ``pod_startup`` seconds to start, then claim in kubetasks' claim order (priority, then
earliest deadline, then arrival). A pod removed while busy finishes what it can in its 30 s grace
period; the rest is put back (the work lost counts in worker-seconds). Reported per workload and
policy: deadlines met, p95 wait from enqueue to start, worker-seconds (pod lifetimes) and busy pods
removed.

    python -m bench.scaling_simulation          # results: bench/RESULTS-scaling-simulation.md
"""

from __future__ import annotations

import argparse
import heapq
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from kubetasks.store import RUNNING_AGE_FACTOR
from kubetasks_operator.scaling import Deadline, Observation, ScalingSpec, desired_replicas, remember

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
GRACE = 30.0
DEFAULT_ESTIMATE = 1.0

RESULTS = Path(__file__).with_name("RESULTS-scaling-simulation.md")


@dataclass(eq=False)
class Task:
    id: int
    name: str
    arrival: float
    duration: float
    deadline: float | None = None  # seconds after the start of the run, absolute
    priority: int = 0
    started: float | None = None
    finished: float | None = None
    ends: float = math.inf

    def order(self) -> tuple[float, float, float, int]:
        return (-self.priority, math.inf if self.deadline is None else self.deadline, self.arrival, self.id)


@dataclass(eq=False)
class Pod:
    id: int
    created: float
    ready_at: float
    running: list[Task] = field(default_factory=list)
    removed: float | None = None  # when it was told to stop (it drains until its tasks end or grace)


@dataclass(frozen=True)
class Workload:
    name: str
    tasks: tuple[Task, ...]
    spec: ScalingSpec
    horizon: float


# -- the world ---------------------------------------------------------------------------------

class Queue:
    """The tasks, the pods, and the measurements; the policies only read it and set a replica count."""

    def __init__(self, workload: Workload) -> None:
        self.spec = workload.spec
        self.pending = sorted((_copy(t) for t in workload.tasks), key=lambda t: t.arrival)
        self.ready: list[tuple[tuple[float, float, float, int], Task]] = []
        self.pods: list[Pod] = []
        self.finished: list[Task] = []
        self.learned: dict[str, tuple[float, int]] = {}
        self.worker_seconds = 0.0
        self.busy_removed = 0
        self.next_pod = 0
        self.arrived_now = False

    def running(self) -> list[Task]:
        return [t for pod in self.pods for t in pod.running]

    def live_pods(self) -> list[Pod]:
        return [pod for pod in self.pods if pod.removed is None]

    def tick(self, now: float, dt: float) -> None:
        self.arrived_now = False
        while self.pending and self.pending[0].arrival <= now:
            task = self.pending.pop(0)
            heapq.heappush(self.ready, (task.order(), task))
            self.arrived_now = True
        for pod in self.pods:
            for task in [t for t in pod.running if t.ends <= now]:
                pod.running.remove(task)
                task.finished = task.ends
                self.finished.append(task)
                self._learn(task)
        self._drain_removed(now)
        for pod in self.live_pods():
            while now >= pod.ready_at and len(pod.running) < self.spec.concurrency and self.ready:
                _, task = heapq.heappop(self.ready)
                task.started, task.ends = now, now + task.duration
                pod.running.append(task)
        self.worker_seconds += dt * len(self.pods)

    def _learn(self, task: Task) -> None:
        # As the store's completion does: a running mean, then an exponential one (weight >= 0.05).
        mean, samples = self.learned.get(task.name, (task.duration, 0))
        weight = min(1.0, max(0.05, 1 / (samples + 1)))
        self.learned[task.name] = (mean + (task.duration - mean) * weight, samples + 1)

    def _drain_removed(self, now: float) -> None:
        for pod in self.pods[:]:
            if pod.removed is None or (pod.running and now - pod.removed < GRACE):
                continue
            for task in pod.running:  # killed at the end of its grace period: the task goes back
                task.started, task.ends = None, math.inf
                heapq.heappush(self.ready, (task.order(), task))
            self.pods.remove(pod)

    def scale_to(self, replicas: int, now: float,
                 victims: Callable[[list[Pod], int, float], list[Pod]]) -> None:
        live = self.live_pods()
        for _ in range(replicas - len(live)):
            self.pods.append(Pod(self.next_pod, now, now + self.spec.pod_startup.total_seconds()))
            self.next_pod += 1
        if replicas < len(live):
            for pod in victims(live, len(live) - replicas, now):
                pod.removed = now
                self.busy_removed += bool(pod.running)

    def done(self) -> bool:
        return not (self.pending or self.ready or self.running())


# -- the policies ------------------------------------------------------------------------------

class Kubetasks:
    """The operator's loop around the real policy: observe, decide, remember, scale."""

    name = "kubetasks"
    poll = 2.0

    def __init__(self, spec: ScalingSpec, *, exact: bool = False, exact_from_start: bool = False,
                 age_bound: bool = True) -> None:
        self.spec, self.exact, self.age_bound = spec, exact, age_bound
        self.exact_from_start = exact_from_start
        self.recent: tuple[tuple[datetime, int], ...] = ()
        self.idle_since: datetime | None = EPOCH
        self.next_poll = 0.0
        if exact:
            self.name = "edf-exact"
        elif exact_from_start:
            self.name = "edf, exact from first start"
        elif not age_bound:
            self.name = "kubetasks, no age bound"

    def step(self, queue: Queue, now: float) -> None:
        if now < self.next_poll and not queue.arrived_now:
            return
        self.next_poll = now + self.poll
        at = EPOCH + timedelta(seconds=now)
        observation = self.observe(queue, now, at)
        decision = desired_replicas(observation, self.spec, at)
        self.recent = remember(self.recent, decision, at, self.spec.scale_down_delay)
        queue.scale_to(decision.replicas, now, idle_first)

    def observe(self, queue: Queue, now: float, at: datetime) -> Observation:
        running = queue.running()
        estimate = self.estimator(queue, running, now)
        ordered = [task for _, task in sorted(queue.ready, key=lambda entry: entry[0])]
        work, deadlines = 0.0, []
        for position, task in enumerate(ordered, start=1):
            work += estimate(task)
            if task.deadline is not None:
                deadlines.append(Deadline(expected_at=EPOCH + timedelta(seconds=task.deadline),
                                          work_seconds=work, position=position))
        if ordered or running:
            self.idle_since = None
        elif self.idle_since is None:
            self.idle_since = at
        live = queue.live_pods()
        return Observation(
            ready=len(ordered), running=len(running), deadlines=tuple(deadlines),
            current_replicas=len(live), busy_pods=sum(1 for pod in live if pod.running),
            idle_since=self.idle_since, recent=self.recent,
            backlog_work_seconds=work + sum(estimate(task) for task in running))

    def estimator(self, queue: Queue, running: list[Task], now: float) -> Callable[[Task], float]:
        if self.exact:
            return lambda task: task.duration
        if self.exact_from_start:
            seen = {task.name for task in running} | set(queue.learned)
            return lambda task: task.duration if task.name in seen else DEFAULT_ESTIMATE
        oldest: dict[str, float] = {}
        for task in running if self.age_bound else ():
            oldest[task.name] = max(oldest.get(task.name, 0.0), now - (task.started or now))
        learned = {name: mean for name, (mean, _) in queue.learned.items()}
        def estimate(task: Task) -> float:
            bound = RUNNING_AGE_FACTOR * oldest.get(task.name, 0.0)
            return learned.get(task.name, max(DEFAULT_ESTIMATE, bound))
        return estimate


class KedaHpa:
    """KEDA's PostgreSQL scaler (a count of unfinished tasks) behind an HPA, as configured by default."""

    name = "keda-hpa"
    poll = 30.0
    stabilization = 300.0
    cooldown = 300.0

    def __init__(self, spec: ScalingSpec) -> None:
        self.spec = spec
        self.next_poll = 0.0
        self.recent: list[tuple[float, int]] = []
        self.last_active = -math.inf

    def step(self, queue: Queue, now: float) -> None:
        if now < self.next_poll:
            return
        self.next_poll = now + self.poll
        count = len(queue.ready) + len(queue.running())
        if count:
            self.last_active = now
        wanted = min(self.spec.max_replicas, math.ceil(count / self.spec.concurrency))
        if wanted == 0 and now - self.last_active < self.cooldown:
            wanted = 1 if queue.live_pods() else 0
        self.recent = [(at, n) for at, n in self.recent if now - at < self.stabilization] + [(now, wanted)]
        current = len(queue.live_pods())
        replicas = wanted if wanted >= current else max(n for _, n in self.recent)
        queue.scale_to(replicas, now, newest_first)


def idle_first(pods: list[Pod], count: int, now: float) -> list[Pod]:
    """The ReplicaSet with kubetasks' pod-deletion-cost: pods not yet ready, then the lowest cost
    (running tasks), then the newest."""
    return sorted(pods, key=lambda p: (p.ready_at <= now, len(p.running), -p.created))[:count]


def newest_first(pods: list[Pod], count: int, now: float) -> list[Pod]:
    """The ReplicaSet's own order without deletion costs: pods not yet ready, then the newest."""
    return sorted(pods, key=lambda p: (p.ready_at <= now, -p.created))[:count]


# -- running and reporting ---------------------------------------------------------------------

@dataclass(frozen=True)
class Outcome:
    workload: str
    policy: str
    deadlines: int
    met: int
    p95_wait: float
    worker_seconds: float
    busy_removed: int
    unfinished: int


def simulate(workload: Workload, policy_for: Callable[[ScalingSpec], Kubetasks | KedaHpa],
             dt: float = 1.0) -> Outcome:
    queue = Queue(workload)
    policy = policy_for(workload.spec)
    now = 0.0
    while now <= workload.horizon or not queue.done():
        queue.tick(now, dt)
        policy.step(queue, now)
        now += dt
        if now > workload.horizon * 4:
            break
    met = sum(1 for t in queue.finished
              if t.deadline is not None and t.finished is not None and t.finished <= t.deadline)
    expected = sum(1 for t in workload.tasks if t.deadline is not None)
    waits = sorted((t.started or 0.0) - t.arrival for t in queue.finished)
    p95 = waits[min(len(waits) - 1, int(0.95 * len(waits)))] if waits else 0.0
    return Outcome(workload.name, policy.name, expected, met, p95, queue.worker_seconds,
                   queue.busy_removed, len(workload.tasks) - len(queue.finished))


def workloads(seed: int = 7) -> Iterator[Workload]:
    rng = random.Random(seed)
    spec = ScalingSpec(min_replicas=0, max_replicas=20, concurrency=4,
                       scale_down_delay=timedelta(seconds=60), scale_to_zero_delay=timedelta(seconds=300),
                       pod_startup=timedelta(seconds=15), backlog_drain=timedelta(seconds=60))
    ids = iter(range(10**9))

    def task(name: str, at: float, duration: float, within: float | None, priority: int = 0) -> Task:
        return Task(next(ids), name, at, duration, None if within is None else at + within, priority)

    yield Workload("steady, deadlines 120 s", tuple(
        task("report", at, rng.uniform(2, 6), 120)
        for at in _poisson(rng, rate=2.0, until=1800)), spec, 1800)
    yield Workload("bursts of 400, deadlines 300 s", tuple(
        task("thumbnail", start + rng.uniform(0, 5), rng.uniform(1, 3), 300)
        for start in (60, 900, 1700) for _ in range(400)), spec, 2400)
    yield Workload("tight deadlines 45 s", tuple(
        task("charge", at, rng.uniform(0.5, 2), 45)
        for at in _poisson(rng, rate=3.0, until=1200)), spec, 1200)
    yield Workload("40 long tasks 1-20 min, due in 30 min", tuple(
        task("rebuild-index", 30 + i, rng.uniform(60, 1200), 1800) for i in range(40)), spec, 2400)
    yield Workload("lax batch + urgent", tuple(
        [task("export", rng.uniform(0, 60), rng.uniform(5, 20), 3600) for _ in range(600)]
        + [task("alert", at, rng.uniform(0.2, 1), 30, priority=0)
           for at in _poisson(rng, rate=0.5, until=1800)]), spec, 3600)
    yield Workload("ramp up and down", tuple(
        task("ingest", at, rng.uniform(1, 4), 180) for at in _ramp(rng, peak=6.0, until=2400)), spec, 2400)
    yield Workload("bursts of mixed names, deadlines 240 s", _mixed(rng, ids), spec, 2400)
    yield Workload("first burst of a new 20 s task, due in 90 s", tuple(
        task("reconcile", 10 + rng.uniform(0, 2), rng.uniform(18, 22), 90) for _ in range(60)), spec, 600)


def _mixed(rng: random.Random, ids: Iterator[int]) -> tuple[Task, ...]:
    means = {"resize": 1.0, "transcode": 40.0, "ocr": 8.0}
    out = []
    for start in (100, 1200):
        for _ in range(300):
            name = rng.choice(tuple(means))
            at = start + rng.uniform(0, 10)
            out.append(Task(next(ids), name, at, rng.uniform(0.5, 1.5) * means[name], at + 240))
    return tuple(out)


def _poisson(rng: random.Random, *, rate: float, until: float) -> Iterator[float]:
    at = rng.expovariate(rate)
    while at < until:
        yield at
        at += rng.expovariate(rate)


def _ramp(rng: random.Random, *, peak: float, until: float) -> Iterator[float]:
    at = 0.0
    while at < until:
        rate = max(0.05, peak * (1 - abs(at - until / 2) / (until / 2)))
        at += rng.expovariate(rate)
        yield at


def _copy(task: Task) -> Task:
    return Task(task.id, task.name, task.arrival, task.duration, task.deadline, task.priority)


POLICIES: tuple[Callable[[ScalingSpec], Kubetasks | KedaHpa], ...] = (
    Kubetasks, lambda spec: Kubetasks(spec, age_bound=False), lambda spec: Kubetasks(spec, exact=True),
    lambda spec: Kubetasks(spec, exact_from_start=True), KedaHpa)


def table(outcomes: list[Outcome]) -> str:
    lines = ["| workload | policy | deadlines met | p95 wait s | worker-seconds | busy pods removed "
             "| unfinished |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for o in outcomes:
        met = f"{100 * o.met / o.deadlines:.1f} % of {o.deadlines}" if o.deadlines else "-"
        lines.append(f"| {o.workload} | {o.policy} | {met} | {o.p95_wait:.0f} | {o.worker_seconds:,.0f} "
                     f"| {o.busy_removed} | {o.unfinished} |")
    return "\n".join(lines)


READING = """
How to read it (seed 7, as recorded with this table):

- kubetasks meets every deadline on every workload, all of them feasible at `maxReplicas` 20,
  and never removes a busy pod; KEDA+HPA removes busy pods (their tasks start over) and misses
  deadlines of long tasks, for 1.5-9x the worker-seconds.
- Against `edf-exact`, which is told every duration at enqueue, kubetasks spends no more
  worker-seconds on six workloads and within 0.2 % on "ramp up and down"; on "first burst of a
  new 20 s task" it spends 46 % more: with no task of that name ever finished, the only evidence
  is the age of the running ones, and the policy has to scale on it. Without that evidence
  (`kubetasks, no age bound`: a never-finished name counts 1 s) it misses 5 % of those deadlines.
- That gap is the price of not knowing, not of the policy: `edf, exact from first start` is told
  a name's exact durations the moment its first task starts, the earliest any evidence exists
  (nothing in a queue says how long a task no one has run will take). It spends 903
  worker-seconds on the first burst and misses 5 % of its deadlines: its first pod is ready 15 s
  after the burst, and the pods it then asks for start too late for the last tasks. Matching
  `edf-exact` there takes knowing at enqueue; kubetasks instead overestimates while it learns
  (twice the oldest running age, `RUNNING_AGE_FACTOR`) and meets every deadline. A smaller
  factor spends less on this workload (1.25: 987 worker-seconds) but 1.0 already misses
  deadlines here, and the factor has to hold for durations the simulation does not draw.
- The p95 wait is set by `backlogDrainSeconds` (60 s here): the policy sizes pods to drain the
  queued work in that time and to meet deadlines, not to start every task at once. A queue that
  wants short waits says so with a deadline or a smaller `backlogDrainSeconds`.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--write", action="store_true", help=f"record the table in {RESULTS.name}")
    args = parser.parse_args()
    outcomes = [simulate(w, p) for w in workloads(args.seed) for p in POLICIES]
    print(table(outcomes))
    if args.write:
        RESULTS.write_text(f"# The scaling policy, simulated\n\n`python -m bench.scaling_simulation --write`"
                           f" (seed {args.seed})\n\n{table(outcomes)}\n{READING}")


if __name__ == "__main__":
    main()
