"""The interface every backend implements, and the in-memory base of Immediate and Dummy."""

from __future__ import annotations

import itertools
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from kubetasks.exceptions import ConfigurationError, TaskResultDoesNotExist
from kubetasks.request import EnqueueRequest
from kubetasks.result import TaskResult, TaskResultStatus

if TYPE_CHECKING:
    import psycopg

    from kubetasks.task import Task


class Backend(ABC):
    """Stores enqueued tasks and reads their results back.

    The capability flags say what a backend can do, so callers never test its class.
    """

    name: ClassVar[str]
    supports_defer: ClassVar[bool] = True
    supports_async_task: ClassVar[bool] = True
    supports_get_result: ClassVar[bool] = True
    supports_priority: ClassVar[bool] = True
    supports_transactions: ClassVar[bool] = False

    def __init__(self, *, allowed_queues: Iterable[str] | None = None) -> None:
        self.allowed_queues = frozenset(allowed_queues) if allowed_queues is not None else None

    @abstractmethod
    def enqueue_many(self, task: Task[..., Any], requests: Sequence[EnqueueRequest], *,
                     connection: psycopg.Connection[Any] | None = None) -> list[TaskResult[Any]]:
        """Write the calls of ``task`` (already validated into ``requests``) and return their
        results."""

    @abstractmethod
    def get_result(self, result_id: str) -> TaskResult[Any]:
        """The current state of a task; ``TaskResultDoesNotExist`` if there is none."""

    def close(self) -> None:
        """Release connections. The backend must not be used afterwards."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


class MemoryBackend(Backend):
    """Keeps results in this process, in enqueue order."""

    def __init__(self, *, allowed_queues: Iterable[str] | None = None) -> None:
        super().__init__(allowed_queues=allowed_queues)
        self._results: dict[str, TaskResult[Any]] = {}
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
        return result

    def refuse_connection(self, connection: object) -> None:
        if connection is not None:
            raise ConfigurationError(
                f"the {self.name} backend cannot enqueue on a database connection; configure "
                "the postgres backend (KUBETASKS_DATABASE_URL) for transactional enqueue")
