"""The production backend: tasks in PostgreSQL, run by ``kubetasks worker`` pods."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import psycopg

from kubetasks.backends.base import Backend
from kubetasks.records import TaskRecord
from kubetasks.request import EnqueueRequest
from kubetasks.result import TaskResult
from kubetasks.store import Store


class PostgresBackend(Backend):
    """Enqueues into the kubetasks tables; ``connection=`` enqueues in the caller's transaction."""

    name = "postgres"
    supports_transactions = True

    def __init__(self, store: Store, *, allowed_queues: Iterable[str] | None = None) -> None:
        super().__init__(allowed_queues=allowed_queues)
        self.store = store

    def enqueue_many(self, requests: Sequence[EnqueueRequest], *,
                     connection: psycopg.Connection[Any] | None = None) -> list[TaskResult[Any]]:
        return [self.to_result(record) for record in self.store.enqueue(requests, connection=connection)]

    def get_result(self, result_id: str) -> TaskResult[Any]:
        return self.to_result(self.store.get(result_id))

    def to_result(self, record: TaskRecord) -> TaskResult[Any]:
        return TaskResult(
            id=str(record.id), task_name=record.task_name, status=record.state,
            queue_name=record.queue_name, priority=record.priority, args=record.args,
            kwargs=record.kwargs, backend=self, context=record.context,
            enqueued_at=record.enqueued_at, run_after=record.run_after,
            expected_at=record.expected_at, started_at=record.started_at,
            last_attempted_at=record.last_attempted_at, finished_at=record.finished_at,
            attempts=record.attempts, max_attempts=record.max_attempts,
            lost_count=record.lost_count, errors=record.errors, worker_ids=record.worker_ids,
            _return_value=record.return_value,
        )

    def close(self) -> None:
        self.store.close()
