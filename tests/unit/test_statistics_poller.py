"""The statistics of many TaskQueues on one database, read together: one statement per poll
however many queues, a NOTIFY-woken queue read at once on its own, and pods removed only on a
fresh reading. Fakes of the store, as in test_queue_controller."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from kubetasks.records import QueueStatistics, StatisticsRequest
from kubetasks_operator.controller import QueueController
from kubetasks_operator.poller import FORGET_AFTER_SECONDS, StatisticsPoller
from kubetasks_operator.spec import parse_spec

from .test_queue_controller import NOW, SPEC, FakeKube, FakeStore

POLL = 2.0


@dataclass
class BatchStore(FakeStore):
    batches: list[list[str]] = field(default_factory=list)

    def queues_statistics(self, requests: list[StatisticsRequest]
                          ) -> dict[StatisticsRequest, QueueStatistics]:
        self.batches.append([r.queue_name for r in requests])
        return {r: self.queue_statistics(r.queue_name, scan_limit=r.scan_limit,
                                         horizon=r.horizon) for r in requests}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def request(number: int) -> StatisticsRequest:
    return StatisticsRequest(f"queue-{number}", scan_limit=1000, horizon=timedelta(seconds=15))


def test_a_hundred_queues_polling_at_their_own_times_cost_one_statement_per_poll() -> None:
    store, clock = BatchStore(), Clock()
    poller = StatisticsPoller(store, clock=clock)  # type: ignore[arg-type]
    for number in range(100):  # the first poll: each queue asks for the first time
        clock.now = number * POLL / 100
        poller.queue_statistics(request(number), max_age=POLL)
    first = len(store.batches)

    polls = 10
    for tick in range(1, polls + 1):  # then each daemon every POLL seconds, at its own phase
        for number in range(100):
            clock.now = tick * POLL + number * POLL / 100
            seen = poller.queue_statistics(request(number), max_age=POLL)
            assert seen.stats.queue_name == f"queue-{number}"
    assert len(store.batches) - first == polls  # not 100 per poll
    assert all(len(batch) == 100 for batch in store.batches[first:])


def test_a_queue_woken_by_notify_is_read_at_once_on_its_own() -> None:
    store, clock = BatchStore(), Clock()
    poller = StatisticsPoller(store, clock=clock)  # type: ignore[arg-type]
    for number in range(3):
        poller.queue_statistics(request(number), max_age=POLL)
    store.batches.clear()

    clock.now = 0.5
    store.set_queue(ready=7)  # "emails" is what the fake counts
    woken = StatisticsRequest("emails", scan_limit=1000)
    assert poller.queue_statistics(woken, max_age=0.0).stats.ready == 7
    assert store.batches == [["emails"]]
    poller.queue_statistics(request(1), max_age=POLL)  # the others keep the shared reading
    assert store.batches == [["emails"]]


def test_a_queue_no_longer_asked_for_is_no_longer_read() -> None:
    store, clock = BatchStore(), Clock()
    poller = StatisticsPoller(store, clock=clock)  # type: ignore[arg-type]
    poller.queue_statistics(request(1), max_age=POLL)  # then its TaskQueue is deleted
    for second in range(0, int(FORGET_AFTER_SECONDS) + 10, 2):
        clock.now = float(second)
        poller.queue_statistics(request(2), max_age=POLL)
    assert "queue-1" in store.batches[1]
    assert store.batches[-1] == ["queue-2"]


@dataclass
class StaleReader:
    """A shared reading from before a pod claimed a task, and the fresh one."""

    stale: QueueStatistics
    fresh: QueueStatistics
    ages: list[float] = field(default_factory=list)

    def queue_statistics(self, wanted: StatisticsRequest, *, max_age: float) -> QueueStatistics:
        self.ages.append(max_age)
        return self.fresh if max_age == 0 else self.stale


def test_pods_are_removed_only_on_a_fresh_reading() -> None:
    store, kube = FakeStore(), FakeKube(replicas=3, ready=3)
    store.set_queue()
    stale = store.queue_statistics("emails", scan_limit=1000, horizon=timedelta(0))
    store.set_queue(running=2)
    store.running_by_uid = {"uid-a": 1, "uid-b": 1}  # claimed since the shared reading
    reader = StaleReader(stale, store.queue_statistics("emails", scan_limit=1000,
                                                       horizon=timedelta(0)))
    controller = QueueController(kube=kube, store=store, namespace="shop", name="emails",
                                 queue_name="emails", spec=parse_spec(SPEC),
                                 post_event=lambda *event: None, statistics=reader,
                                 statistics_max_age=POLL)
    live = {"uid-a": "w-a", "uid-b": "w-b", "uid-c": "w-c"}

    decision = controller.step(NOW, live)

    assert reader.ages == [POLL, 0.0]  # the shared reading said scale in: read again
    assert decision.replicas == 2 and kube.calls[-1] == ("scale", 2)  # never below the busy pods
    costs: dict[str, Any] = dict(call[1] for call in kube.calls if call[0] == "annotate")
    assert costs == {"w-a": "100", "w-b": "100", "w-c": "0"}
