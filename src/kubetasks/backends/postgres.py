"""The production backend: tasks in PostgreSQL, run by ``kubetasks worker`` pods."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from kubetasks import collector
from kubetasks.backends.base import Backend
from kubetasks.exceptions import DuplicateTaskError
from kubetasks.records import to_result
from kubetasks.request import EnqueueRequest
from kubetasks.result import TaskResult
from kubetasks.store import Store

if TYPE_CHECKING:
    import psycopg

    from kubetasks.task import Task


class PostgresBackend(Backend):
    """Enqueues into the kubetasks tables; ``connection=`` enqueues in the caller's transaction."""

    name = "postgres"
    supports_transactions = True

    def __init__(self, store: Store, *, allowed_queues: Iterable[str] | None = None) -> None:
        super().__init__(allowed_queues=allowed_queues)
        self.store = store

    def enqueue_many(self, task: Task[..., Any], requests: Sequence[EnqueueRequest], *,
                     connection: psycopg.Connection[Any] | None = None) -> list[TaskResult[Any]]:
        try:
            records = self.store.enqueue(requests, connection=connection,
                                         unique_conflict=task.unique_conflict)
        except DuplicateTaskError as error:
            raise DuplicateTaskError(str(error), existing=to_result(error.existing, self)) from None
        with collector.paused(len(records)):
            return [to_result(record, self) for record in records]

    def get_result(self, result_id: str) -> TaskResult[Any]:
        return to_result(self.store.get(result_id), self)

    def cancel(self, result_id: str, *, by: str | None = None) -> bool:
        return self.store.cancel(result_id, by=by)

    def close(self) -> None:
        self.store.close()
