"""Schedules: a task enqueued on a cron expression or at a fixed interval.

A schedule is declared in code (``@task(schedule=...)`` or ``schedule(task, cron=...)``) or in
a TaskQueue's ``spec.schedules``, and registered in the ``kubetasks_schedules`` table, which is
the one source of truth for when it fires next. Any number of firers (workers, operators) read
the due schedules and fire each with a conditional update of its ``next_tick``: exactly one of
them enqueues the task of a tick (``fire_due``).

Ticks are computed here, as pure functions of plain values: cron expressions by cronsim, in
the schedule's time zone, with Debian cron's rules at daylight-saving changes (a time skipped
by the clock fires when the clock jumps past it; a time that happens twice fires once).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from kubetasks.exceptions import InvalidTaskError
from kubetasks.payload import JSON, dumps
from kubetasks.request import (
    MAX_TASK_NAME,
    check_max_attempts,
    check_name,
    check_priority,
    check_queue_name,
    check_signature,
    serialisable,
)

if TYPE_CHECKING:
    from kubetasks.task import Task

log = logging.getLogger(__name__)

Missed = Literal["skip", "run_once"]
MISSED_POLICIES: tuple[Missed, ...] = ("skip", "run_once")

LATE_TOLERANCE = timedelta(seconds=60)
"""With ``missed="skip"``, a tick fires only while it is at most this late: firers check every
second or two, so a later tick was missed (no worker nor operator was running)."""

CODE = "code"
"""The source of schedules declared in code."""

registry: dict[str, Schedule] = {}
"""The schedules declared in code in this process, by name. Workers register them."""


@dataclass(frozen=True, kw_only=True)
class Schedule:
    """When to enqueue which task, with which arguments. Exactly one of ``cron`` (five or six
    fields, in ``timezone``) and ``every`` (at least a second) is set."""

    name: str
    task_name: str
    queue_name: str = "default"
    cron: str | None = None
    every: timedelta | None = None
    timezone: str = "UTC"
    args: Sequence[JSON] = ()
    kwargs: Mapping[str, JSON] = field(default_factory=dict)
    priority: int = 0
    max_attempts: int = 1
    missed: Missed = "skip"
    source: str = CODE

    def __post_init__(self) -> None:
        check_name("schedule name", self.name, MAX_TASK_NAME)
        check_name("task name", self.task_name, MAX_TASK_NAME)
        check_queue_name(self.queue_name, None)
        check_priority(self.priority)
        check_max_attempts(self.max_attempts)
        if (self.cron is None) == (self.every is None):
            raise InvalidTaskError(f"schedule {self.name!r}: give either cron or every, not "
                                   f"{'both' if self.cron is not None else 'neither'}")
        if self.missed not in MISSED_POLICIES:
            raise InvalidTaskError(f"schedule {self.name!r}: missed={self.missed!r} is invalid: "
                                   "use 'skip' or 'run_once'")
        zone = self.zone  # refuses an unknown time zone
        if self.cron is not None:
            check_cron(self.name, self.cron, zone)
        elif not isinstance(self.every, timedelta) or self.every < timedelta(seconds=1):
            raise InvalidTaskError(f"schedule {self.name!r}: every={self.every!r} is invalid: "
                                   "use a timedelta of at least one second")
        object.__setattr__(self, "args", serialisable(self.task_name, list(self.args), "args"))
        object.__setattr__(self, "kwargs", serialisable(self.task_name, dict(self.kwargs), "kwargs"))

    @property
    def zone(self) -> ZoneInfo:
        try:
            return ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise InvalidTaskError(
                f"schedule {self.name!r}: time zone {self.timezone!r} is unknown: use an IANA "
                "name such as 'UTC' or 'Europe/Berlin'") from None

    @property
    def args_json(self) -> str:
        return dumps(self.args)

    @property
    def kwargs_json(self) -> str:
        return dumps(self.kwargs)

    @property
    def when(self) -> str:
        """The timing as a person reads it: ``cron 0 3 * * * Europe/Berlin`` or ``every 300s``."""
        if self.cron is not None:
            return f"cron {self.cron} {self.timezone}"
        assert self.every is not None
        return f"every {self.every.total_seconds():g}s"


def check_cron(name: str, expression: object, zone: ZoneInfo) -> str:
    if not isinstance(expression, str):
        raise InvalidTaskError(f"schedule {name!r}: cron {expression!r} is not a str")
    try:
        CronSim(expression, datetime.now(zone))
    except CronSimError as error:
        raise InvalidTaskError(
            f"schedule {name!r}: cron {expression!r} is invalid ({error}): use five fields, "
            "minute hour day-of-month month day-of-week, e.g. '0 3 * * *'") from None
    return expression


# -- ticks (pure) ----------------------------------------------------------------------


def first_tick(schedule: Schedule, now: datetime) -> datetime:
    """The first tick after ``now``: the next cron time, or ``now + every``."""
    if schedule.every is not None:
        return now + schedule.every
    return _cron_after(schedule, now)


def _cron_after(schedule: Schedule, moment: datetime) -> datetime:
    assert schedule.cron is not None
    tick: datetime = next(CronSim(schedule.cron, moment.astimezone(schedule.zone)))
    return tick.astimezone(UTC)


def _cron_latest(schedule: Schedule, moment: datetime) -> datetime | None:
    """The latest cron time at or before ``moment``, or None if there is none in a year."""
    assert schedule.cron is not None
    start = moment.astimezone(schedule.zone) + timedelta(microseconds=1)
    tick: datetime | None = next(CronSim(schedule.cron, start, reverse=True), None)
    return tick.astimezone(UTC) if tick is not None else None


@dataclass(frozen=True, slots=True)
class Firing:
    """What a firer does with a due schedule: enqueue a task for ``tick`` (None: skip the
    ticks that were missed) and move the schedule on to ``next_tick``."""

    tick: datetime | None
    next_tick: datetime


def plan(schedule: Schedule, next_tick: datetime, now: datetime) -> Firing:
    """The firing of a schedule whose ``next_tick`` is due at ``now``: one task at most, for
    the latest tick due (``run_once``), or for it only if it is at most ``LATE_TOLERANCE``
    late (``skip``); and the first tick after ``now`` next."""
    latest = next_tick
    if schedule.every is not None:
        periods = (now - next_tick) // schedule.every
        latest = next_tick + periods * schedule.every
        following = latest + schedule.every
    else:
        found = _cron_latest(schedule, now)
        if found is not None and found > latest:
            latest = found
        following = _cron_after(schedule, max(now, latest))
    on_time = now - latest <= LATE_TOLERANCE
    fire = latest if schedule.missed == "run_once" or on_time else None
    return Firing(tick=fire, next_tick=following)


# -- declaring in code -------------------------------------------------------------------


def schedule(
    task: Task[..., Any],
    *,
    cron: str | None = None,
    every: timedelta | None = None,
    timezone: str = "UTC",
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    name: str | None = None,
    missed: Missed = "skip",
) -> Schedule:
    """Enqueue ``task`` on a cron expression (in ``timezone``) or ``every`` interval.

    >>> schedule(send_report, cron="0 7 * * MON-FRI", timezone="Europe/Berlin", args=["daily"])

    The workers that import this module register the schedule (by ``name``, default the task's
    name) in the database; the workers and the operator fire it, one task per tick. Ticks
    missed while nothing ran are skipped (``missed="skip"``), or make up one task
    (``missed="run_once"``).
    """
    kwargs = dict(kwargs or {})
    check_signature(task.func, task.name, args, kwargs, task.takes_context)
    declared = Schedule(
        name=name or task.name, task_name=task.name, queue_name=task.queue_name, cron=cron,
        every=every, timezone=timezone, args=list(args), kwargs=kwargs, priority=task.priority,
        max_attempts=task.max_attempts, missed=missed)
    existing = registry.get(declared.name)
    if existing is not None and existing != declared:
        raise InvalidTaskError(f"schedule name {declared.name!r} is already declared "
                               f"({existing.when}); pass name=... to tell them apart")
    registry[declared.name] = declared
    return declared


# -- firing --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DueSchedule:
    """A registered schedule whose next tick has come, as the store reads it."""

    schedule: Schedule
    next_tick: datetime
    now: datetime
    """The database's clock, so that every firer agrees on what is due."""


class ScheduleStore(Protocol):
    """What firing needs of ``kubetasks.store.Store``."""

    def due_schedules(self, queue_names: Sequence[str] | None) -> list[DueSchedule]: ...
    def fire_schedule(self, name: str, *, expected_tick: datetime, tick: datetime | None,
                      next_tick: datetime) -> tuple[bool, int | None]: ...


def fire_due(store: ScheduleStore, queue_names: Sequence[str] | None) -> list[int]:
    """Fire every due schedule of these queues (all queues: None); returns the ids of the tasks
    enqueued. Safe to run from any number of processes at once: a schedule whose tick another
    firer took is left alone."""
    enqueued = []
    for due in store.due_schedules(queue_names):
        firing = plan(due.schedule, due.next_tick, due.now)
        advanced, task_id = store.fire_schedule(
            due.schedule.name, expected_tick=due.next_tick, tick=firing.tick,
            next_tick=firing.next_tick)
        if task_id is not None:
            enqueued.append(task_id)
            log.info("schedule %s fired for %s", due.schedule.name, firing.tick,
                     extra={"task_id": task_id, "queue": due.schedule.queue_name,
                            "task_name": due.schedule.task_name})
        elif advanced and firing.tick is None:
            log.warning("schedule %s: tick %s was missed (nothing fired it in time); skipped",
                        due.schedule.name, due.next_tick, extra={"queue": due.schedule.queue_name})
    return enqueued


@dataclass(frozen=True, slots=True)
class RegisteredSchedule:
    """A row of the schedules table, for ``kubetasks schedules``."""

    schedule: Schedule
    next_tick: datetime
    last_tick: datetime | None
    last_task_id: int | None
    last_task_state: str | None


def from_row(row: Mapping[str, Any]) -> Schedule:
    """A schedule as stored. Raises ``InvalidTaskError`` for a row this process cannot use (a
    time zone its system does not know, a row written by hand)."""
    every = row["every_seconds"]
    return Schedule(
        name=row["name"], task_name=row["task_name"], queue_name=row["queue_name"],
        cron=row["cron"], every=timedelta(seconds=every) if every is not None else None,
        timezone=row["timezone"], args=row["args"], kwargs=row["kwargs"],
        priority=row["priority"], max_attempts=row["max_attempts"], missed=row["missed"],
        source=row["source"])


def declare(task: Task[..., Any], when: str | timedelta) -> Schedule:
    """``@task(schedule=...)``: a cron expression (in UTC) or an interval; ``schedule()`` takes
    a time zone, arguments and the missed-tick policy."""
    if isinstance(when, timedelta):
        return schedule(task, every=when)
    if isinstance(when, str):
        return schedule(task, cron=when)
    raise InvalidTaskError(f"schedule {when!r} of task {task.name} is invalid: use a cron "
                           "expression such as '0 3 * * *' or a timedelta")
