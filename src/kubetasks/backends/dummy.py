"""Records tasks and never runs them: for the unit tests of applications."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from kubetasks.backends.base import MemoryBackend
from kubetasks.request import EnqueueRequest
from kubetasks.result import TaskResult

if TYPE_CHECKING:
    import psycopg

    from kubetasks.task import Task


class DummyBackend(MemoryBackend):
    """Every enqueue is recorded as READY and stays so.

    >>> backend = kubetasks.configure(backend="dummy")
    >>> send_welcome.enqueue(42)
    >>> [r.args for r in backend.results]
    [[42]]
    >>> backend.clear()
    """

    name = "dummy"

    def enqueue_many(self, task: Task[..., Any], requests: Sequence[EnqueueRequest], *,
                     connection: psycopg.Connection[Any] | None = None) -> list[TaskResult[Any]]:
        return [result for result, _ in self.record_unique(task, requests)]
