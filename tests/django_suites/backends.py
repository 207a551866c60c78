"""What Django's suite names as its Dummy and Immediate backends, pointed at kubetasks.

Both are ``KubeTasksBackend`` on a real PostgreSQL, with no option of their own (Django's
tests check ``options == {}``):

- ``StoringBackend`` stands where the suite says ``DummyBackend``: tasks are stored and never
  run, in a database no worker serves (``KUBETASKS_SUITE_IDLE_URL``). ``results`` and ``clear()``
  read and empty that database, as Dummy's do in memory.
- ``WaitingBackend`` stands where it says ``ImmediateBackend``: tasks go to the database a real
  ``kubetasks worker`` serves (``KUBETASKS_SUITE_WORKER_URL``), and ``enqueue`` returns once
  the worker has finished the task, as Immediate's does once it ran it.
"""

from __future__ import annotations

import os
import time
from typing import Any

import psycopg

from kubetasks.backends.postgres import PostgresBackend
from kubetasks.contrib.django import KubeTasksBackend, _store


class _On(KubeTasksBackend):  # type: ignore[misc]
    url_variable = ""

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self.url = os.environ[self.url_variable]
        self.kubetasks = PostgresBackend(_store(self.url), allowed_queues=self.queues or None)


class StoringBackend(_On):
    url_variable = "KUBETASKS_SUITE_IDLE_URL"

    @property
    def results(self) -> list[Any]:
        return [self.get_result(str(record.id))
                for record in reversed(self.kubetasks.store.list_tasks(limit=10_000))]

    def clear(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute("DELETE FROM kubetasks_tasks")


class WaitingBackend(_On):
    url_variable = "KUBETASKS_SUITE_WORKER_URL"

    def enqueue(self, task: Any, args: Any, kwargs: Any) -> Any:
        result = super().enqueue(task, args, kwargs)
        deadline = time.monotonic() + 30
        while not result.is_finished:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the worker did not finish task {result.id} in 30 s")
            time.sleep(0.02)
            result = self.get_result(result.id)
        return result
