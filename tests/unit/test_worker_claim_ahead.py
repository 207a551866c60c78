"""A worker claims ahead only while its tasks are short: the tasks claimed ahead wait for a free
slot, start in claim order, never run beyond the concurrency, and go back unstarted when the
worker stops."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from kubetasks import task
from kubetasks.records import TaskRecord
from kubetasks.result import TaskResultStatus
from kubetasks.worker.attempt import Failed, Result, Succeeded
from kubetasks.worker.metrics import WorkerMetrics
from kubetasks.worker.reporter import Reporter
from kubetasks.worker.slots import MAX_CLAIMED_AHEAD, SHORT_TASK_SECONDS, Slots

NOW = datetime(2026, 1, 1, tzinfo=UTC)
gate = threading.Event()
ran: list[int] = []
running_now = 0
most_at_once = 0
lock = threading.Lock()


def entered(number: int) -> None:
    global running_now, most_at_once
    with lock:
        running_now += 1
        most_at_once = max(most_at_once, running_now)
        ran.append(number)


def left() -> None:
    global running_now
    with lock:
        running_now -= 1


@task(name="tests.claim_ahead.gated")
def gated(number: int) -> None:
    entered(number)
    gate.wait(5)
    left()


@task(name="tests.claim_ahead.async_gated")
async def async_gated(number: int) -> None:
    entered(number)
    while not gate.is_set():
        await asyncio.sleep(0.005)
    left()


@task(name="tests.claim_ahead.medium")
def medium() -> None:
    time.sleep(SHORT_TASK_SECONDS / 2)


@task(name="tests.claim_ahead.quick_with_timeout", timeout=0.1)
def quick_with_timeout() -> None:
    pass


@task(name="tests.claim_ahead.slow_with_timeout", timeout=0.1)
def slow_with_timeout() -> None:
    time.sleep(0.3)


@task(name="tests.claim_ahead.long")
def long() -> None:
    time.sleep(SHORT_TASK_SECONDS * 1.5)


def record(task_name: str, *args: Any) -> TaskRecord:
    return TaskRecord(
        id=len(ran) + 1, queue_name="q", task_name=task_name, priority=0, args=list(args),
        kwargs={}, context={}, state=TaskResultStatus.RUNNING, run_after=NOW, expected_at=None,
        enqueued_at=NOW, started_at=NOW, last_attempted_at=NOW, finished_at=None, attempts=1,
        max_attempts=1, lost_count=0, claim_id=uuid4(), worker_pod="p", worker_pod_uid="u",
        worker_nonce="n", heartbeat_at=NOW, worker_ids=[], return_value=None, errors=[])


def slots_of(concurrency: int) -> Slots:
    reporter = Reporter(None, WorkerMetrics(), worker_id="w",  # type: ignore[arg-type]
                        after_failures=lambda: None)  # never started: outcomes stay pending
    slots = Slots(concurrency, reporter=reporter, metrics=WorkerMetrics(), on_change=lambda: None)
    slots.open(asyncio.get_running_loop())
    return slots


async def knowing_tasks_are_short(concurrency: int, *, first: int) -> Slots:
    """Slots that ran one gated task (``first``) at once, and so claim ahead; the gate is
    closed again."""
    slots = slots_of(concurrency)
    gate.set()
    slots.start(record("tests.claim_ahead.gated", first))
    await settled(slots, 0)
    gate.clear()
    return slots


def outcomes(slots: Slots) -> dict[UUID | None, Result]:
    """What each settled task's attempt came to, by claim (the reporter never writes them)."""
    return {f.record.claim_id: f.result for f in slots.reporter._pending}


async def settled(slots: Slots, count: int) -> None:
    for _ in range(500):
        if slots.unsettled == count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{slots.unsettled} tasks unsettled, expected {count}")


def test_short_tasks_are_claimed_ahead_and_wait_for_a_slot_in_claim_order() -> None:
    async def scenario() -> None:
        slots = slots_of(2)
        assert slots.free == 2  # nothing known of the tasks yet: no claiming ahead
        gate.set()
        for number in (1, 2):
            slots.start(record("tests.claim_ahead.gated", number))
        await settled(slots, 0)
        # Tasks of microseconds: the most there is room for wait claimed ahead.
        assert slots.free == 2 + MAX_CLAIMED_AHEAD
        gate.clear()
        for number in (3, 4, 5, 6):
            slots.start(record("tests.claim_ahead.gated", number))
        await asyncio.sleep(0.05)
        assert (slots.unsettled, len(slots.claims())) == (4, 4)
        assert slots.free == MAX_CLAIMED_AHEAD - 2  # two run, two wait
        assert ran == [1, 2, 3, 4]
        gate.set()  # slots free: the waiting ones start (two threads: either may log first)
        await settled(slots, 0)
        assert ran[:4] == [1, 2, 3, 4] and sorted(ran[4:]) == [5, 6]
        assert most_at_once == 2

    ran.clear()
    asyncio.run(scenario())


def test_a_slot_runs_the_tasks_waiting_for_it_in_claim_order() -> None:
    async def scenario() -> None:
        slots = await knowing_tasks_are_short(1, first=0)
        for number in range(1, 7):
            slots.start(record("tests.claim_ahead.gated", number))
        await asyncio.sleep(0.05)
        assert ran == [0, 1]
        gate.set()
        await settled(slots, 0)
        assert ran == [0, 1, 2, 3, 4, 5, 6]

    ran.clear()
    asyncio.run(scenario())


def test_tasks_claimed_ahead_go_back_unstarted_when_the_worker_stops() -> None:
    async def scenario() -> None:
        slots = await knowing_tasks_are_short(1, first=1)
        first, second = record("tests.claim_ahead.gated", 2), record("tests.claim_ahead.gated", 3)
        slots.start(first)
        slots.start(second)
        back = slots.take_waiting()
        assert [r.record for r in back] == [second]
        assert slots.claims() == [first.claim_id]
        gate.set()
        await settled(slots, 0)
        assert ran == [1, 2]

    ran.clear()
    asyncio.run(scenario())


def test_long_tasks_are_claimed_only_into_free_slots() -> None:
    async def scenario() -> None:
        slots = slots_of(2)
        slots.start(record("tests.claim_ahead.long"))
        await settled(slots, 0)
        assert slots.free == 2

    asyncio.run(scenario())


def test_as_many_wait_as_the_slots_get_through_in_a_short_task_time() -> None:
    """Tasks of half SHORT_TASK_SECONDS: two slots get through about four in that time."""
    async def scenario() -> None:
        slots = slots_of(2)
        slots.start(record("tests.claim_ahead.medium"))
        await settled(slots, 0)
        assert 2 + 2 <= slots.free <= 2 + 4

    asyncio.run(scenario())


def test_claims_ahead_wait_until_half_the_room_is_free() -> None:
    """Claims stay large: none while more than half the slots and waiting places are held."""
    async def scenario() -> None:
        slots = await knowing_tasks_are_short(2, first=0)
        capacity = 2 + MAX_CLAIMED_AHEAD
        for number in range(capacity // 2 + 1):
            slots.start(record("tests.claim_ahead.gated", number))
        await asyncio.sleep(0.05)
        assert slots.free == 0
        gate.set()
        await settled(slots, 0)
        # All settled: the whole room is claimable again (how many may wait depends on the
        # durations measured, the last of them a gated task's 50 ms).
        assert slots.free == 2 + slots._claimed_ahead() > 2

    asyncio.run(scenario())


def test_a_timeout_counts_from_the_start_not_from_the_wait_for_a_slot() -> None:
    """Two tasks of a 0.1 s timeout wait 0.3 s behind a gated one: the quick one succeeds; the
    slow one, started by the thread that ran it, is timed out 0.1 s into its run."""
    async def scenario() -> None:
        slots = await knowing_tasks_are_short(1, first=0)
        slots.start(record("tests.claim_ahead.gated", 1))
        quick = record("tests.claim_ahead.quick_with_timeout")
        slow = record("tests.claim_ahead.slow_with_timeout")
        slots.start(quick)
        slots.start(slow)
        await asyncio.sleep(0.3)
        assert slots.unsettled == 3  # nothing timed out while it waited
        gate.set()
        started = time.monotonic()
        await settled(slots, 0)
        assert 0.09 < time.monotonic() - started < 0.25  # not the slow task's whole 0.3 s
        assert isinstance(outcomes(slots)[quick.claim_id], Succeeded)
        timed_out = outcomes(slots)[slow.claim_id]
        assert isinstance(timed_out, Failed) and "timeout of 0.1 s" in str(timed_out.error)

    ran.clear()
    asyncio.run(scenario())


def test_sync_and_async_tasks_waiting_together_never_run_beyond_the_concurrency() -> None:
    """A thread that finds an ``async def`` task next gives its slot up to the loop: the two
    kinds share the slots, and every task runs."""
    global most_at_once

    async def scenario() -> None:
        slots = await knowing_tasks_are_short(2, first=0)
        names = ("tests.claim_ahead.gated", "tests.claim_ahead.async_gated")
        waiting = [record(names[number % 2], number) for number in range(1, 13)]
        for claimed in waiting:
            slots.start(claimed)
        await asyncio.sleep(0.05)
        assert running_now == 2 and slots.unsettled == 12
        gate.set()
        await settled(slots, 0)
        assert sorted(ran) == list(range(13))
        assert most_at_once == 2
        assert all(isinstance(outcomes(slots)[r.claim_id], Succeeded) for r in waiting)

    ran.clear()
    most_at_once = 0
    asyncio.run(scenario())
