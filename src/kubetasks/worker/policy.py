"""The worker's decisions as pure functions of plain values: no clock, no database."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from kubetasks.backoff import Backoff
from kubetasks.exceptions import FailNow, InvalidTaskError, Retry, UnknownTaskError
from kubetasks.records import TaskRecord
from kubetasks.request import LATEST

FINAL_ERRORS: tuple[type[BaseException], ...] = (FailNow, UnknownTaskError, InvalidTaskError)
"""Errors another attempt cannot mend: the task asked to fail, this worker does not know the
task, or the stored arguments do not fit its signature."""

UNKNOWN_TASK_GRACE = timedelta(minutes=10)
"""How long after its enqueue a task whose name this worker does not know is put back rather
than failed: during a rollout, web pods may enqueue a new task before every worker knows it."""

UNKNOWN_TASK_PUT_BACK = timedelta(seconds=15)
"""How long such a task waits before it is offered again: it is put back, no attempt counted."""

MIN_IDLE_WAIT = 0.02
"""Floor of an idle sleep. A ready task that another transaction holds locked is skipped by
the claim yet due now; without a floor the loop would spin on it."""


@dataclass(frozen=True, slots=True)
class RetryAt:
    """Put the task back, to run again after ``run_after``."""

    run_after: datetime
    delay: float


@dataclass(frozen=True, slots=True)
class FailTask:
    """End the task FAILED; ``reason`` says why no attempt is left. ``note``, when given, is
    added to the stored error: the task's own error does not explain the failure."""

    reason: str
    note: str = ""


@dataclass(frozen=True, slots=True)
class PutBack:
    """Return the task without counting an attempt, for another worker after ``run_after``."""

    run_after: datetime


FailureDecision = RetryAt | FailTask | PutBack


def after_failure(error: BaseException, *, attempt: int, max_attempts: int, backoff: Backoff,
                  now: datetime, enqueued_at: datetime | None = None,
                  unknown_task_grace: timedelta = UNKNOWN_TASK_GRACE) -> FailureDecision:
    """What to do with a task whose attempt number ``attempt`` raised ``error``.

    A task this worker does not know is put back while it is younger than
    ``unknown_task_grace`` (a newer worker may know it; 0 fails it at once, as Django's
    workers do). Final errors fail at once; otherwise
    the task runs again while attempts are left, after the task's backoff for that attempt, or
    after ``Retry(delay=...)`` when the task asked for one (which still counts against
    ``max_attempts``).
    """
    if (isinstance(error, UnknownTaskError) and enqueued_at is not None
            and now - enqueued_at < unknown_task_grace):
        return PutBack(now + UNKNOWN_TASK_PUT_BACK)
    if isinstance(error, FINAL_ERRORS):
        return FailTask(f"{type(error).__name__} cannot be mended by another attempt")
    if attempt >= max_attempts:
        return FailTask(f"attempt {attempt} of {max_attempts} failed; no attempt is left")
    requested = error.delay if isinstance(error, Retry) else None
    source = "Retry(delay=...)" if requested is not None else "the task's retry_backoff"
    delay = requested if requested is not None else backoff.delay(attempt)
    if isinstance(delay, bool) or not isinstance(delay, (int, float)) or delay == math.inf \
            or (isinstance(delay, float) and math.isnan(delay)):
        reason = (f"the retry delay {delay!r} from {source} is not a finite number of seconds, "
                  "so no retry could be scheduled")
        return FailTask(reason, note=reason)
    return retry_after(now, max(0, delay))


def retry_after(now: datetime, delay: float) -> RetryAt:
    """A retry ``delay`` seconds from ``now``; a delay past ``request.LATEST`` (the latest time
    every reader can hold) waits until then."""
    room = (LATEST - now).total_seconds()
    if delay >= room:
        return RetryAt(LATEST, room)
    return RetryAt(now + timedelta(seconds=delay), float(delay))


def idle_wait(*, now: datetime, next_run_after: datetime | None, poll_interval: float) -> float:
    """Seconds to sleep when no task was due: until the earliest scheduled one, at most the
    poll interval (a NOTIFY or a freed slot wakes the worker earlier)."""
    if next_run_after is None:
        return poll_interval
    until = (next_run_after - now).total_seconds()
    return min(poll_interval, max(MIN_IDLE_WAIT, until))


def queue_wait(record: TaskRecord) -> float:
    """Seconds between the moment a task could first run and its claim."""
    if record.last_attempted_at is None:
        return 0.0
    ready_at = max(record.run_after, record.enqueued_at)
    return max(0.0, (record.last_attempted_at - ready_at).total_seconds())


def reconnect_delay(failures: int) -> float:
    """Back off from a database that keeps failing: 0.1 s doubling up to 5 s."""
    return float(min(5.0, 0.1 * 2 ** max(0, failures - 1)))


SCHEDULE_POLL = 30.0
"""Longest wait between two looks at the schedules: one registered meanwhile (a TaskQueue's,
another worker's) is fired by its registrant or the operator until then."""


def schedule_wait(*, now: datetime, next_tick: datetime | None) -> float:
    """Seconds until the next schedule's tick, at most ``SCHEDULE_POLL``."""
    if next_tick is None:
        return SCHEDULE_POLL
    return min(SCHEDULE_POLL, max(MIN_IDLE_WAIT, (next_tick - now).total_seconds()))
