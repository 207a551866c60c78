"""Schedules on PostgreSQL: registering keeps ticks, and exactly one task per tick however
many firers run at once."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import psycopg

from kubetasks.schedules import Schedule, fire_due
from kubetasks.store import Store


def scheduled_tasks(dsn: str) -> list[tuple[str, datetime]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT schedule_name, schedule_tick FROM kubetasks_tasks "
                            "WHERE schedule_name IS NOT NULL ORDER BY 1, 2").fetchall()
    return [(name, tick) for name, tick in rows]


def test_many_firers_enqueue_exactly_one_task_per_tick(dsn: str, store: Store) -> None:
    schedules = [
        Schedule(name="every-second", task_name="tests.tick", every=timedelta(seconds=1)),
        Schedule(name="cron-each-second", task_name="tests.tick", cron="* * * * * *",
                 timezone="Europe/Berlin"),
        Schedule(name="other-queue", task_name="tests.tick", queue_name="other",
                 every=timedelta(seconds=1), missed="run_once", args=[1, "a"]),
    ]
    store.register_schedules(schedules, now=datetime.now(UTC))
    fired: Counter[int] = Counter()
    errors: list[BaseException] = []
    stop = threading.Event()

    def firer() -> None:
        own = Store(dsn, max_size=1)
        try:
            while not stop.is_set():
                fired.update(fire_due(own, None))
        except BaseException as error:
            errors.append(error)
        finally:
            own.close()

    threads = [threading.Thread(target=firer) for _ in range(12)]
    for thread in threads:
        thread.start()
    time.sleep(5.5)
    stop.set()
    for thread in threads:
        thread.join()

    assert errors == []
    assert all(count == 1 for count in fired.values())  # no task id reported twice
    rows = scheduled_tasks(dsn)
    assert len(rows) == len(fired)  # every task was reported by exactly one firer
    for name in ("every-second", "cron-each-second", "other-queue"):
        ticks = [tick for n, tick in rows if n == name]
        assert len(ticks) >= 4, name
        # one task per tick, and no tick left out between the first and the last
        steps = {b - a for a, b in pairwise(ticks)}
        assert steps == {timedelta(seconds=1)}, (name, ticks)


def test_registering_again_keeps_the_next_tick_and_a_new_timing_starts_over(store: Store) -> None:
    now = datetime(2026, 5, 1, 10, 0, 20, tzinfo=UTC)
    daily = Schedule(name="daily", task_name="tests.tick", cron="0 3 * * *", timezone="Europe/Berlin")
    assert store.register_schedules([daily], now=now) == ["daily"]
    assert store.register_schedules([daily], now=now + timedelta(days=3)) == []  # unchanged
    [listed] = store.list_schedules()
    assert listed.next_tick == datetime(2026, 5, 2, 1, 0, tzinfo=UTC)  # 3:00 CEST

    store.register_schedules([Schedule(name="daily", task_name="tests.tick", cron="0 4 * * *",
                                       timezone="Europe/Berlin")], now=now)
    [listed] = store.list_schedules()
    assert (listed.schedule.cron, listed.next_tick) == ("0 4 * * *", datetime(2026, 5, 2, 2, 0, tzinfo=UTC))


def test_a_source_replaces_its_own_schedules_only(store: Store) -> None:
    now = datetime.now(UTC)

    def declared(name: str, source: str) -> Schedule:
        return Schedule(name=name, task_name="tests.tick", every=timedelta(hours=1), source=source)

    store.register_schedules([declared("from-code", "code")], now=now)
    store.register_schedules([declared("a", "TaskQueue shop/emails"),
                              declared("b", "TaskQueue shop/emails")], now=now,
                             replace_source="TaskQueue shop/emails")
    store.register_schedules([declared("b", "TaskQueue shop/emails")], now=now,
                             replace_source="TaskQueue shop/emails")
    assert [r.schedule.name for r in store.list_schedules()] == ["b", "from-code"]
    assert store.delete_schedule("from-code") is True
    assert store.delete_schedule("from-code") is False


def test_a_missed_tick_is_skipped_or_run_once(dsn: str, store: Store) -> None:
    long_ago = datetime.now(UTC) - timedelta(hours=5)
    # hourly, with the latest tick five minutes ago: well past LATE_TOLERANCE whatever the clock says
    hourly = f"{(datetime.now(UTC) - timedelta(minutes=5)).minute} * * * *"
    store.register_schedules([
        Schedule(name="skipper", task_name="tests.tick", cron=hourly, missed="skip"),
        Schedule(name="catcher", task_name="tests.tick", cron=hourly, missed="run_once"),
    ], now=long_ago)

    enqueued = fire_due(store, ["default"])

    assert len(enqueued) == 1
    [(name, tick)] = scheduled_tasks(dsn)
    assert name == "catcher"
    assert datetime.now(UTC) - tick < timedelta(minutes=10)  # the latest tick, not the first
    assert fire_due(store, ["default"]) == []  # both moved on to their next tick
    assert all(r.next_tick > datetime.now(UTC) for r in store.list_schedules())


def test_a_fired_task_is_an_ordinary_task_of_its_queue(store: Store) -> None:
    store.register_schedules([Schedule(
        name="report", task_name="tests.report", queue_name="reports", every=timedelta(seconds=1),
        args=["daily"], kwargs={"lines": 5}, priority=7, max_attempts=3)],
        now=datetime.now(UTC) - timedelta(seconds=1))
    [task_id] = fire_due(store, ["reports"])
    record: Any = store.get(task_id)
    assert (record.queue_name, record.task_name, record.args, record.kwargs, record.priority,
            record.max_attempts, record.state) == (
        "reports", "tests.report", ["daily"], {"lines": 5}, 7, 3, "READY")
    [listed] = store.list_schedules("reports")
    assert (listed.last_task_id, listed.last_task_state) == (task_id, "READY")
