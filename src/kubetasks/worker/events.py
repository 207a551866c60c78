"""The log lines of a task's life in the worker, each with the same fields.

Every line carries ``event`` (a stable key to filter on: ``task.started``, ``task.succeeded``,
...), ``task_id``, ``queue``, ``task_name``, ``attempt``, ``duration`` (seconds, a number) and
``worker_id``; ``docs/observability.md`` lists them. Messages may change wording, the keys do
not. A line below the logger's level costs one level check and no dict.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from kubetasks.records import RequeuedTask, TaskRecord

log = logging.getLogger("kubetasks.worker.tasks")


class TaskEvents:
    """Writes the worker's task lines, with its id on each."""

    def __init__(self, worker_id: str) -> None:
        self.worker_id = worker_id

    def fields(self, event: str, record: TaskRecord, duration: float) -> dict[str, Any]:
        return {"event": event, "task_id": record.id, "queue": record.queue_name,
                "task_name": record.task_name, "attempt": record.attempts,
                "duration": round(duration, 6), "worker_id": self.worker_id}

    def started(self, record: TaskRecord, queue_wait: float) -> None:
        """A claimed task's function is about to run; ``queue_wait``: seconds since it could."""
        if log.isEnabledFor(logging.INFO):
            extra = self.fields("task.started", record, 0.0)
            extra["queue_wait"] = round(queue_wait, 6)
            log.info("task started", extra=extra)

    def succeeded(self, record: TaskRecord, seconds: float) -> None:
        if log.isEnabledFor(logging.INFO):
            log.info("task succeeded in %.3f s", seconds,
                     extra=self.fields("task.succeeded", record, seconds))

    def retrying(self, record: TaskRecord, seconds: float, delay: float,
                 error: BaseException) -> None:
        extra = self.fields("task.retrying", record, seconds)
        extra["retry_in"] = round(delay, 3)
        log.warning("attempt %d of %d failed; retry in %.1f s", record.attempts,
                    record.max_attempts, delay, exc_info=error, extra=extra)

    def failed(self, record: TaskRecord, seconds: float, reason: str,
               error: BaseException | None) -> None:
        log.error("task failed: %s", reason, exc_info=error,
                  extra=self.fields("task.failed", record, seconds))

    def note(self, event: str, record: TaskRecord, message: str, *args: object,
             level: int = logging.WARNING, duration: float | None = None,
             exc_info: bool = False) -> None:
        """Any other line about one task (put back, timed out, claim lost, unwritable); its
        ``duration`` is the time since the claim unless given."""
        if log.isEnabledFor(level):
            seconds = since_claim(record) if duration is None else duration
            log.log(level, message, *args, exc_info=exc_info,
                    extra=self.fields(event, record, seconds))

    def lost_returned(self, task: RequeuedTask) -> None:
        """A task an earlier process of this pod held, put back (or failed) at start."""
        log.warning("put back a task an earlier process of this pod held -> %s", task.state,
                    extra={"event": "task.lost_returned", "task_id": task.task_id,
                           "queue": task.queue_name, "task_name": task.task_name,
                           "attempt": task.attempt, "duration": 0.0,
                           "worker_id": self.worker_id})


def since_claim(record: TaskRecord) -> float:
    """Seconds since this attempt's claim (``last_attempted_at``), 0 if it has none."""
    claimed = record.last_attempted_at
    return max(0.0, (datetime.now(UTC) - claimed).total_seconds()) if claimed else 0.0
