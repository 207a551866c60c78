"""Runs each task inline at enqueue and records the outcome: no database, no worker."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from kubetasks.backends.base import MemoryBackend
from kubetasks.execution import run_inline
from kubetasks.request import EnqueueRequest
from kubetasks.result import TaskResult

if TYPE_CHECKING:
    import psycopg

    from kubetasks.task import Task


class ImmediateBackend(MemoryBackend):
    """The default without a database, so an application works before its infrastructure.

    The task runs once, in the caller's thread, before ``enqueue`` returns; a failure is
    recorded on the result (status FAILED, ``errors``), not raised. A ``run_after`` is refused
    (it could not delay the run); ``expected_at`` is recorded.
    """

    name = "immediate"
    supports_defer = False

    def enqueue_many(self, task: Task[..., Any], requests: Sequence[EnqueueRequest], *,
                     connection: psycopg.Connection[Any] | None = None) -> list[TaskResult[Any]]:
        recorded = self.record_unique(task, requests)
        for result, fresh in recorded:
            if fresh:
                run_inline(task, result)
        return [result for result, _ in recorded]
