"""Ticks of schedules: cron in a time zone across daylight-saving changes, intervals, and the
policy for missed ticks. Pure: no clock, no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kubetasks import InvalidTaskError, task
from kubetasks.schedules import Schedule, first_tick, plan, registry, schedule

BERLIN = "Europe/Berlin"


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[arg-type,misc]


def ticks(s: Schedule, start: datetime, count: int) -> list[datetime]:
    """The ticks a schedule fires from ``start`` on, as firers on time would see them."""
    found, tick = [], first_tick(s, start)
    for _ in range(count):
        found.append(tick)
        tick = plan(s, tick, tick).next_tick
    return found


def test_daily_cron_follows_the_local_clock_across_a_change() -> None:
    s = Schedule(name="daily", task_name="t", cron="0 3 * * *", timezone=BERLIN)
    # 3:00 in Berlin is 2:00 UTC in winter and 1:00 UTC in summer (from 29 March 2026).
    assert ticks(s, utc(2026, 3, 27, 12, 0), 3) == [
        utc(2026, 3, 28, 2, 0), utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 1, 0)]


def test_a_time_the_clock_skips_fires_once_when_the_clock_jumps_past_it() -> None:
    # On 29 March 2026 Berlin's clocks go from 2:00 to 3:00: 2:30 never happens.
    s = Schedule(name="gap", task_name="t", cron="30 2 * * *", timezone=BERLIN)
    assert ticks(s, utc(2026, 3, 28, 12, 0), 3) == [
        utc(2026, 3, 29, 1, 0),   # 3:00 CEST, the moment the skipped 2:30 is passed
        utc(2026, 3, 30, 0, 30),  # 2:30 CEST
        utc(2026, 3, 31, 0, 30)]


def test_a_time_that_happens_twice_fires_once() -> None:
    # On 25 October 2026 Berlin's clocks go from 3:00 back to 2:00: 2:30 happens twice.
    s = Schedule(name="overlap", task_name="t", cron="30 2 * * *", timezone=BERLIN)
    assert ticks(s, utc(2026, 10, 24, 12, 0), 2) == [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]


def test_an_every_half_hour_cron_fires_in_both_passes_of_a_repeated_hour() -> None:
    s = Schedule(name="half-hourly", task_name="t", cron="*/30 * * * *", timezone=BERLIN)
    assert ticks(s, utc(2026, 10, 24, 23, 50), 5) == [
        utc(2026, 10, 25, 0, 0), utc(2026, 10, 25, 0, 30),   # 2:00 and 2:30 CEST
        utc(2026, 10, 25, 1, 0), utc(2026, 10, 25, 1, 30),   # 2:00 and 2:30 CET
        utc(2026, 10, 25, 2, 0)]


def test_interval_keeps_its_cadence_from_the_first_tick() -> None:
    s = Schedule(name="often", task_name="t", every=timedelta(seconds=90))
    assert ticks(s, utc(2026, 1, 1, 0, 0), 3) == [
        utc(2026, 1, 1, 0, 1, 30), utc(2026, 1, 1, 0, 3), utc(2026, 1, 1, 0, 4, 30)]


def test_a_tick_found_a_little_late_still_fires() -> None:
    s = Schedule(name="s", task_name="t", cron="0 * * * *")
    assert plan(s, utc(2026, 1, 1, 5, 0), utc(2026, 1, 1, 5, 0, 40)).tick == utc(2026, 1, 1, 5, 0)


def test_skip_drops_ticks_missed_while_nothing_ran() -> None:
    s = Schedule(name="s", task_name="t", cron="0 * * * *", missed="skip")
    firing = plan(s, utc(2026, 1, 1, 5, 0), utc(2026, 1, 1, 9, 30))
    assert firing.tick is None
    assert firing.next_tick == utc(2026, 1, 1, 10, 0)


def test_skip_fires_the_current_tick_when_it_is_on_time() -> None:
    s = Schedule(name="s", task_name="t", cron="0 * * * *", missed="skip")
    firing = plan(s, utc(2026, 1, 1, 5, 0), utc(2026, 1, 1, 9, 0, 10))
    assert (firing.tick, firing.next_tick) == (utc(2026, 1, 1, 9, 0), utc(2026, 1, 1, 10, 0))


def test_run_once_makes_up_missed_ticks_with_one_task_for_the_latest() -> None:
    s = Schedule(name="s", task_name="t", cron="0 * * * *", missed="run_once")
    firing = plan(s, utc(2026, 1, 1, 5, 0), utc(2026, 1, 1, 9, 30))
    assert (firing.tick, firing.next_tick) == (utc(2026, 1, 1, 9, 0), utc(2026, 1, 1, 10, 0))


def test_run_once_on_an_interval_fires_the_latest_period_and_keeps_the_cadence() -> None:
    s = Schedule(name="s", task_name="t", every=timedelta(minutes=10), missed="run_once")
    firing = plan(s, utc(2026, 1, 1, 0, 0), utc(2026, 1, 1, 1, 5))
    assert (firing.tick, firing.next_tick) == (utc(2026, 1, 1, 1, 0), utc(2026, 1, 1, 1, 10))


@pytest.mark.parametrize(("changes", "named"), [
    ({"cron": "61 * * * *"}, "cron '61 * * * *' is invalid"),
    ({"cron": "0 3 * * *", "every": timedelta(hours=1)}, "either cron or every, not both"),
    ({}, "either cron or every, not neither"),
    ({"every": timedelta(milliseconds=10)}, "every=datetime.timedelta(microseconds=10000)"),
    ({"cron": "0 3 * * *", "timezone": "Mars/Olympus"}, "time zone 'Mars/Olympus' is unknown"),
    ({"cron": "0 3 * * *", "missed": "all"}, "missed='all' is invalid"),
    ({"cron": "0 3 * * *", "args": [object()]}, "args"),
])
def test_bad_schedules_are_refused_naming_the_value(changes: dict[str, object], named: str) -> None:
    with pytest.raises(InvalidTaskError, match=named.replace("(", r"\(").replace(")", r"\)")
                       .replace("*", r"\*")):
        Schedule(name="bad", task_name="t", **changes)  # type: ignore[arg-type]


def test_schedule_in_code_checks_the_arguments_and_registers_by_name() -> None:
    @task(queue_name="reports")
    def report(kind: str, *, lines: int = 10) -> None: ...

    declared = schedule(report, cron="0 7 * * MON-FRI", timezone=BERLIN, args=["daily"],
                        kwargs={"lines": 5}, name="weekday-report")
    assert registry["weekday-report"] is declared
    assert (declared.task_name, declared.queue_name, declared.args) == (report.name, "reports", ["daily"])
    with pytest.raises(InvalidTaskError, match="arguments do not match"):
        schedule(report, every=timedelta(hours=1), kwargs={"colour": "red"}, name="other")
    with pytest.raises(InvalidTaskError, match="'weekday-report' is already declared"):
        schedule(report, cron="0 8 * * *", args=["daily"], name="weekday-report")
    registry.pop("weekday-report")
