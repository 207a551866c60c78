"""The interface every backend implements, and the in-memory base of Immediate and Dummy."""

from __future__ import annotations

import itertools
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from kubetasks.exceptions import (
    ConfigurationError,
    DuplicateTaskError,
    InvalidTaskError,
    TaskResultDoesNotExist,
)
from kubetasks.identity import requester
from kubetasks.request import EnqueueRequest
from kubetasks.result import TaskResult, TaskResultStatus

if TYPE_CHECKING:
    import psycopg

    from kubetasks.task import Task


class Backend(ABC):
    """Stores enqueued tasks and reads their results back.

    The capability flags say what a backend can do, so callers never test its class;
    ``validate_task`` refuses, before anything is written, a call that needs one it lacks.
    """

    name: ClassVar[str]
    supports_defer: ClassVar[bool] = True
    """``run_after`` is honoured: the task waits until then."""
    supports_async_task: ClassVar[bool] = True
    """``async def`` tasks can run."""
    supports_transactions: ClassVar[bool] = False
    """``using(connection=...)`` enqueues inside the caller's database transaction."""

    def __init__(self, *, allowed_queues: Iterable[str] | None = None) -> None:
        self.allowed_queues = frozenset(allowed_queues) if allowed_queues is not None else None

    def validate_task(self, task: Task[..., Any], *, connection: object = None) -> None:
        """Refuse, naming the value, what this backend cannot do (as Django's backends do)."""
        if task.run_after is not None and not self.supports_defer:
            raise InvalidTaskError(
                f"run_after {_shown(task.run_after)} cannot be honoured: the {self.name} backend "
                "does not defer tasks; enqueue without run_after, or configure the postgres "
                "backend (KUBETASKS_DATABASE_URL)")
        if task.is_async and not self.supports_async_task:
            raise InvalidTaskError(
                f"task {task.name} is async, which the {self.name} backend cannot run")
        if connection is not None and not self.supports_transactions:
            raise ConfigurationError(
                f"the {self.name} backend cannot enqueue on a database connection; configure "
                "the postgres backend (KUBETASKS_DATABASE_URL) for transactional enqueue")

    @abstractmethod
    def enqueue_many(self, task: Task[..., Any], requests: Sequence[EnqueueRequest], *,
                     connection: psycopg.Connection[Any] | None = None) -> list[TaskResult[Any]]:
        """Write the calls of ``task`` (already validated into ``requests``) and return their
        results."""

    @abstractmethod
    def get_result(self, result_id: str) -> TaskResult[Any]:
        """The current state of a task; ``TaskResultDoesNotExist`` if there is none."""

    @abstractmethod
    def cancel(self, result_id: str, *, by: str | None = None) -> bool:
        """Cancel a task (``TaskResult.cancel``); False if it has finished or is already being
        cancelled."""

    def close(self) -> None:
        """Release connections. The backend must not be used afterwards."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


class MemoryBackend(Backend):
    """Keeps results in this process, in enqueue order."""

    def __init__(self, *, allowed_queues: Iterable[str] | None = None) -> None:
        super().__init__(allowed_queues=allowed_queues)
        self._results: dict[str, TaskResult[Any]] = {}
        self._keys: dict[tuple[str, str], tuple[str, str]] = {}  # (task, key) -> (id, while)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    @property
    def results(self) -> list[TaskResult[Any]]:
        """Every result recorded, oldest first."""
        with self._lock:
            return list(self._results.values())

    def clear(self) -> None:
        with self._lock:
            self._results.clear()

    def get_result(self, result_id: str) -> TaskResult[Any]:
        with self._lock:
            stored = self._results.get(str(result_id))
        if stored is None:
            raise TaskResultDoesNotExist(f"no task with id {result_id!r} in {self!r}")
        return stored

    def unique_holder(self, request: EnqueueRequest, conflict: str) -> TaskResult[Any] | None:
        """The live result holding the request's unique key, as the postgres backend finds it
        (``conflict="raise"`` raises ``DuplicateTaskError`` instead)."""
        if request.unique_key is None:
            return None
        with self._lock:
            held = self._keys.get((request.task_name, request.unique_key))
            holder = self._results.get(held[0]) if held else None
        if holder is None or not _holds_key(holder, held[1] if held else ""):
            return None
        if conflict == "raise":
            raise DuplicateTaskError(
                f"unique_key {request.unique_key!r} of task {request.task_name} is held by task "
                f"{holder.id} ({holder.status}); nothing was enqueued", existing=holder)
        return holder

    def record_unique(self, task: Task[..., Any], requests: Sequence[EnqueueRequest],
                      ) -> list[tuple[TaskResult[Any], bool]]:
        """(result, recorded) per request: a request whose unique key a live result holds gets
        that result; with ``unique_conflict="raise"`` nothing is recorded then."""
        for request in requests:
            self.unique_holder(request, task.unique_conflict)
        out: list[tuple[TaskResult[Any], bool]] = []
        for request in requests:
            holder = self.unique_holder(request, "return")
            out.append((holder, False) if holder is not None else (self.record(request), True))
        return out

    def cancel(self, result_id: str, *, by: str | None = None) -> bool:
        """A READY result (the dummy backend's) ends CANCELLED; the immediate backend's have
        all run by the time the caller holds them."""
        result = self.get_result(result_id)
        with self._lock:
            if result.status != TaskResultStatus.READY:
                return False
            result.status = TaskResultStatus.CANCELLED
            result.finished_at = result.cancelled_at = datetime.now(UTC)
            result.cancelled_by = by or requester()
        return True

    def record(self, request: EnqueueRequest) -> TaskResult[Any]:
        now = datetime.now(UTC)
        with self._lock:
            result: TaskResult[Any] = TaskResult(
                id=str(next(self._ids)), task_name=request.task_name,
                status=TaskResultStatus.READY, queue_name=request.queue_name,
                priority=request.priority, args=request.args, kwargs=request.kwargs,
                context=request.context, backend=self, enqueued_at=now,
                run_after=request.run_after or now, expected_at=request.expected_at,
                max_attempts=request.max_attempts,
            )
            self._results[result.id] = result
            if request.unique_key is not None and request.unique_while is not None:
                self._keys[(request.task_name, request.unique_key)] = (result.id,
                                                                       request.unique_while)
        return result


def _holds_key(result: TaskResult[Any], unique_while: str) -> bool:
    if result.status == TaskResultStatus.READY:
        return result.started_at is None or unique_while == "ready_or_running"
    return result.status == TaskResultStatus.RUNNING and unique_while == "ready_or_running"


def _shown(when: datetime | timedelta) -> str:
    return when.isoformat() if isinstance(when, datetime) else f"{when.total_seconds():g}s (a delay)"
