"""What a caller gets back from an enqueue: a task's state, return value and errors."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Generic, Protocol, TypeVar, cast

from kubetasks.payload import JSON, dumps

T = TypeVar("T")


class ResultSource(Protocol):
    """Where a result is read back from: every backend is one."""

    def get_result(self, result_id: str) -> TaskResult[Any]: ...
    def cancel(self, result_id: str, *, by: str | None = None) -> bool: ...


class TaskResultStatus(StrEnum):
    """The states of a task, as in Django's tasks framework, plus CANCELLED."""

    READY = "READY"
    RUNNING = "RUNNING"
    SUCCESSFUL = "SUCCESSFUL"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_finished(self) -> bool:
        return self in (self.SUCCESSFUL, self.FAILED, self.CANCELLED)


@dataclass(frozen=True, slots=True)
class TaskError:
    """One failed attempt (or a loss of the process running it)."""

    exception_class_path: str
    traceback: str
    message: str = ""
    attempt: int | None = None
    worker_id: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TaskError:
        return cls(
            exception_class_path=str(data.get("exception_class_path", "")),
            traceback=str(data.get("traceback", "")),
            message=str(data.get("message", "")),
            attempt=data.get("attempt"),
            worker_id=data.get("worker_id"),
        )

    def to_json(self) -> str:
        """As stored in a task's ``errors`` list, with the time it was recorded."""
        return dumps({
            "exception_class_path": self.exception_class_path, "traceback": self.traceback,
            "message": self.message, "attempt": self.attempt, "worker_id": self.worker_id,
            "at": datetime.now(UTC).isoformat(),
        })

    @classmethod
    def of_class(cls, kind: type[BaseException], message: str, *, traceback: str = "",
                 attempt: int | None = None, worker_id: str | None = None) -> TaskError:
        """An error of exception class ``kind``, recorded by its importable path."""
        return cls(exception_class_path=f"{kind.__module__}.{kind.__qualname__}",
                   traceback=traceback, message=message, attempt=attempt, worker_id=worker_id)


@dataclass(eq=False)
class TaskResult(Generic[T]):
    """The state of one enqueued task. ``refresh()`` reloads it from its backend.

    >>> r = send_welcome.enqueue(42)
    >>> r.refresh()
    >>> if r.status == TaskResultStatus.SUCCESSFUL:
    ...     print(r.return_value)
    """

    id: str
    task_name: str
    status: TaskResultStatus
    queue_name: str
    priority: int
    args: list[JSON]
    kwargs: dict[str, JSON]
    backend: ResultSource = field(repr=False)
    context: dict[str, JSON] = field(default_factory=dict)
    enqueued_at: datetime | None = None
    run_after: datetime | None = None
    expected_at: datetime | None = None
    started_at: datetime | None = None
    last_attempted_at: datetime | None = None
    finished_at: datetime | None = None
    attempts: int = 0
    max_attempts: int = 1
    lost_count: int = 0
    errors: list[TaskError] = field(default_factory=list)
    worker_ids: list[str] = field(default_factory=list)
    cancelled_at: datetime | None = None
    """When cancelling the task was asked for (it may still be RUNNING until its worker stops it)."""
    cancelled_by: str | None = None
    """Who asked: ``user@host`` unless the caller said."""
    _return_value: JSON = field(default=None, repr=False)

    @property
    def return_value(self) -> T:
        """The task's return value; raises ``ValueError`` until the task has succeeded."""
        if self.status == TaskResultStatus.SUCCESSFUL:
            return cast(T, self._return_value)
        if self.status.is_finished:
            raise ValueError(f"task {self.id} ended {self.status}; it has no return value")
        raise ValueError(f"task {self.id} is {self.status}; it has not finished yet")

    @property
    def is_finished(self) -> bool:
        return self.status.is_finished

    def refresh(self) -> None:
        """Reload this result's fields from the backend."""
        fresh = self.backend.get_result(self.id)
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(fresh, name))

    async def arefresh(self) -> None:
        await asyncio.to_thread(self.refresh)

    def cancel(self, *, by: str | None = None) -> bool:
        """Cancel the task, recording who asked (``by``, default ``user@host``) and when, and
        reload this result. A READY task ends CANCELLED at once. A RUNNING one is stopped by
        its worker within a heartbeat: an ``async def`` task is cancelled, a sync one sees
        ``context.cancelled`` (it cannot be interrupted); either way it ends CANCELLED and is
        not retried. False if the task had already finished, or was already being cancelled.
        """
        cancelled = self.backend.cancel(self.id, by=by)
        self.refresh()
        return cancelled

    async def acancel(self, *, by: str | None = None) -> bool:
        return await asyncio.to_thread(self.cancel, by=by)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TaskResult) and (other.id, other.backend) == (self.id, self.backend)

    def __hash__(self) -> int:
        return hash(self.id)


@dataclass(frozen=True, slots=True)
class TaskContext:
    """Passed as the first argument to tasks defined with ``takes_context=True``."""

    task_result: TaskResult[Any]
    context: dict[str, JSON]
    cancellation: threading.Event = field(default_factory=threading.Event, repr=False,
                                          compare=False)
    """Set by the worker when someone cancels the running task."""

    @property
    def attempt(self) -> int:
        return self.task_result.attempts

    @property
    def cancelled(self) -> bool:
        """Whether someone asked to cancel this task while it runs: a long sync task checks it
        between steps and returns (or raises) early; the task then ends CANCELLED."""
        return self.cancellation.is_set()
