"""Rows of the task table and of the statistics queries, as plain values."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from kubetasks.payload import JSON
from kubetasks.result import ResultSource, TaskError, TaskResult, TaskResultStatus


@dataclass(slots=True)
class TaskRecord:
    """One row of ``kubetasks_tasks``.

    Not frozen, unlike the other records: a frozen dataclass sets each field through
    ``object.__setattr__``, 9 µs for these 27 against 2.4 µs, and a bulk enqueue and every
    claim build one per task (a fifth of a bulk enqueue's client time went to it)."""

    id: int
    queue_name: str
    task_name: str
    priority: int
    args: list[JSON]
    kwargs: dict[str, JSON]
    context: dict[str, JSON]
    state: TaskResultStatus
    run_after: datetime
    expected_at: datetime | None
    enqueued_at: datetime
    started_at: datetime | None
    last_attempted_at: datetime | None
    finished_at: datetime | None
    attempts: int
    max_attempts: int
    lost_count: int
    claim_id: UUID | None
    worker_pod: str | None
    worker_pod_uid: str | None
    worker_nonce: str | None
    heartbeat_at: datetime | None
    worker_ids: list[str]
    return_value: JSON
    errors: list[TaskError]
    cancelled_at: datetime | None = None
    cancelled_by: str | None = None
    trace_context: dict[str, str] | None = None
    """The W3C trace context current at enqueue (``traceparent``, ``tracestate``), if any."""

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> TaskRecord:
        # Only our columns: a column added by a newer migration must not break older code.
        return cls.from_columns([row[name] for name in cls.__dataclass_fields__])

    @classmethod
    def from_columns(cls, values: Sequence[Any]) -> TaskRecord:
        """A row's columns in the order of the fields, as read: the state as its text, the
        errors as JSON objects."""
        record = cls(*values)
        record.state = TaskResultStatus(record.state)
        errors: list[Any] = record.errors
        record.errors = [TaskError.from_json(error) for error in errors]
        return record


def to_result(record: TaskRecord, backend: ResultSource) -> TaskResult[Any]:
    """The public view of a row, read back through ``backend`` on ``refresh()``."""
    return TaskResult(
        id=str(record.id), task_name=record.task_name, status=record.state,
        queue_name=record.queue_name, priority=record.priority, args=record.args,
        kwargs=record.kwargs, backend=backend, context=record.context,
        enqueued_at=record.enqueued_at, run_after=record.run_after,
        expected_at=record.expected_at, started_at=record.started_at,
        last_attempted_at=record.last_attempted_at, finished_at=record.finished_at,
        attempts=record.attempts, max_attempts=record.max_attempts,
        lost_count=record.lost_count, errors=record.errors, worker_ids=record.worker_ids,
        cancelled_at=record.cancelled_at, cancelled_by=record.cancelled_by,
        _return_value=record.return_value,
    )


@dataclass(frozen=True, slots=True)
class QueueStats:
    """What the scaler and ``kubetasks status`` see of one queue."""

    queue_name: str
    ready: int
    scheduled: int
    running: int
    overdue: int
    next_deadline: datetime | None
    count_limit: int | None = None
    """None: the counts are exact. Otherwise ready, scheduled and overdue were counted up to this
    many each (``Store.queue_statistics``): a count equal to it means at least that many."""

    @property
    def capped(self) -> bool:
        """Whether a count reached ``count_limit``, so that it is a lower bound."""
        limit = self.count_limit
        return limit is not None and max(self.ready, self.scheduled, self.overdue) >= limit


@dataclass(frozen=True, slots=True)
class QueueSettings:
    """A queue's row of ``kubetasks_queues``, which every worker reads at claim time: paused,
    a cap on its RUNNING tasks across all workers, and a rate of ``rate_limit`` starts per
    ``rate_period`` (a token bucket: a burst of up to ``rate_limit``, then one start every
    ``rate_period / rate_limit``). A queue without a row has none of them."""

    queue_name: str
    paused: bool = False
    max_running: int | None = None
    rate_limit: int | None = None
    rate_period: timedelta | None = None

    def __post_init__(self) -> None:
        if self.max_running is not None and (
                isinstance(self.max_running, bool) or not isinstance(self.max_running, int)
                or self.max_running < 1):
            raise ValueError(f"max_running {self.max_running!r} of queue {self.queue_name!r} is "
                             "invalid: use an int >= 1, or None for no cap")
        if (self.rate_limit is None) != (self.rate_period is None):
            raise ValueError(f"the rate of queue {self.queue_name!r} needs both a number of starts "
                             f"and a period (got {self.rate_limit!r} per {self.rate_period!r})")
        if self.rate_limit is not None and (
                isinstance(self.rate_limit, bool) or not isinstance(self.rate_limit, int)
                or self.rate_limit < 1):
            raise ValueError(f"rate limit {self.rate_limit!r} of queue {self.queue_name!r} is "
                             "invalid: use an int >= 1 starts per period")
        if self.rate_period is not None and self.rate_period <= timedelta(0):
            raise ValueError(f"rate period {self.rate_period!r} of queue {self.queue_name!r} is "
                             "invalid: use a duration > 0")

    @property
    def starts_per_second(self) -> float | None:
        if self.rate_limit is None or self.rate_period is None:
            return None
        return self.rate_limit / self.rate_period.total_seconds()

    @property
    def rate_text(self) -> str | None:
        """The rate as ``kubetasks limit --rate`` takes it, e.g. ``10/60s``."""
        if self.rate_limit is None or self.rate_period is None:
            return None
        return f"{self.rate_limit}/{self.rate_period.total_seconds():g}s"


@dataclass(frozen=True, slots=True)
class QueueStatistics:
    """One queue as a scaling step sees it, read in one round trip (``Store.queue_statistics``).

    ``stats`` has ready, scheduled and overdue counted up to ``stats.count_limit``.
    ``work_seconds`` is the estimated work of the running tasks and of the due tasks among the
    first ``scanned`` in claim order; ``deadlines`` are the tasks with a deadline among those, in
    claim order. ``scanned`` equal to ``scan_limit`` means tasks beyond were not looked at."""

    stats: QueueStats
    busy_pods: dict[str, int]
    deadlines: tuple[DeadlineWork, ...]
    work_seconds: float
    oldest_ready_seconds: float
    settings: QueueSettings
    scanned: int
    scan_limit: int


@dataclass(frozen=True, slots=True)
class StatisticsRequest:
    """One queue's part of ``Store.queues_statistics``: which queue, and how far to read it."""

    queue_name: str
    scan_limit: int
    horizon: timedelta = timedelta(0)
    default_seconds: float = 1.0
    deadline_limit: int = 1000


@dataclass(frozen=True, slots=True)
class DeadlineWork:
    """A READY task with a deadline, and the estimated seconds of work (and the number of tasks)
    up to and including it in claim order."""

    expected_at: datetime
    work_seconds: float
    position: int


@dataclass(frozen=True, slots=True)
class RequeuedTask:
    task_id: int
    queue_name: str
    task_name: str
    state: TaskResultStatus
    attempt: int = 0
    """The attempt that was lost (0 where unknown)."""


@dataclass(frozen=True, slots=True)
class LostTask:
    """A RUNNING task whose worker is gone, before it is put back: what ``kubetasks requeue``
    shows and what it needs to put the task back (its claim) or fail it (its lost count)."""

    task_id: int
    queue_name: str
    task_name: str
    claim_id: UUID
    worker_pod: str | None
    lost_count: int
