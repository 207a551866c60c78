"""A backend for Django's tasks framework: Django 6's ``django.tasks`` and the ``django-tasks``
backport (module ``django_tasks``) used by Django 4.2-5.x projects.

    TASKS = {
        "default": {
            "BACKEND": "kubetasks.contrib.django.KubeTasksBackend",
            "QUEUES": ["default", "emails"],
            "OPTIONS": {"DATABASE": "default"},   # enqueue in Django's own transaction
        }
    }

OPTIONS: ``DATABASE`` — a Django database alias (PostgreSQL with psycopg 3) to enqueue on, so a
task exists if and only if the surrounding ``transaction.atomic()`` commits; or ``DATABASE_URL``
— a separate PostgreSQL (default: ``KUBETASKS_DATABASE_URL`` / libpq's ``PG*``);
``MAX_ATTEMPTS`` — attempts per task (default 1, as in Django).

Workers run Django tasks with ``kubetasks worker --import kubetasks.contrib.django.setup
--import app.tasks`` and ``DJANGO_SETTINGS_MODULE`` set.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.db import close_old_connections

try:  # Django 6
    from django.tasks import TaskResultStatus as DjangoStatus
    from django.tasks.backends.base import BaseTaskBackend
    from django.tasks.base import TaskError as DjangoTaskError
    from django.tasks.base import TaskResult as DjangoTaskResult
    from django.tasks.exceptions import TaskResultDoesNotExist as DjangoDoesNotExist
except ImportError:  # Django 4.2-5.x with the django-tasks backport
    from django_tasks import TaskResultStatus as DjangoStatus
    from django_tasks.backends.base import BaseTaskBackend
    from django_tasks.base import TaskError as DjangoTaskError
    from django_tasks.base import TaskResult as DjangoTaskResult
    from django_tasks.exceptions import TaskResultDoesNotExist as DjangoDoesNotExist

from kubetasks.backends.postgres import PostgresBackend
from kubetasks.config import Settings
from kubetasks.exceptions import TaskResultDoesNotExist
from kubetasks.records import to_result
from kubetasks.result import TaskResult, TaskResultStatus
from kubetasks.store import Store
from kubetasks.task import Task, register, registry

# Django makes one backend instance per thread (and per alias): what must be seen by all of
# them lives here, so that a result enqueued in one request can be read in another.
_django_tasks: dict[str, Any] = {}
_stores: dict[str, Store] = {}


def _store(url: str) -> Store:
    if url not in _stores:
        _stores[url] = Store(url)
    return _stores[url]


def as_a_request(func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` run the way Django runs a view: ``close_old_connections()`` before and after,
    as the ``request_started`` and ``request_finished`` signals do. A worker thread runs task
    after task; without this, a connection that broke (PostgreSQL restarted) or passed
    ``CONN_MAX_AGE`` would stay on the thread and fail every later task there."""
    if inspect.iscoroutinefunction(func):
        close_async = sync_to_async(close_old_connections)  # where the ORM's async calls run

        @functools.wraps(func)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            await close_async()
            try:
                return await func(*args, **kwargs)
            finally:
                await close_async()

        return run_async

    @functools.wraps(func)
    def run(*args: Any, **kwargs: Any) -> Any:
        close_old_connections()
        try:
            return func(*args, **kwargs)
        finally:
            close_old_connections()

    return run


class KubeTasksBackend(BaseTaskBackend):  # type: ignore[misc]
    """Django tasks enqueued into kubetasks, run by ``kubetasks worker`` pods."""

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self.database_alias: str | None = self.options.get("DATABASE")
        url = self.options.get("DATABASE_URL") or Settings.from_env().database_url
        self.max_attempts = int(self.options.get("MAX_ATTEMPTS", 1))
        self.kubetasks = PostgresBackend(_store(url), allowed_queues=self.queues or None)

    def validate_task(self, task: Any) -> None:
        super().validate_task(task)
        # Called when a task is defined: register it so that a worker importing the
        # module can run it, by name, without importing anything named by the database.
        _django_tasks.setdefault(task.module_path, task)
        if task.module_path not in registry:
            register(Task(func=as_a_request(task.func), name=task.module_path,
                          queue_name=task.queue_name,
                          priority=task.priority, max_attempts=self.max_attempts,
                          takes_context=task.takes_context))

    def enqueue(self, task: Any, args: Any, kwargs: Any) -> Any:
        self.validate_task(task)
        defined = registry[task.module_path]
        configured = defined.using(queue_name=task.queue_name, priority=task.priority,
                                   run_after=task.run_after, backend=self.kubetasks,
                                   connection=self._connection())
        result = configured.enqueue(*args, **kwargs)
        return self.to_django(result, task)

    def get_result(self, result_id: str) -> Any:
        try:
            record = self.kubetasks.store.get(result_id, connection=self._connection())
        except TaskResultDoesNotExist as error:
            raise DjangoDoesNotExist(str(error)) from error
        task = _django_tasks.get(record.task_name)
        if task is None:
            raise DjangoDoesNotExist(
                f"result {result_id} is of task {record.task_name!r}, which is not imported in "
                "this process")
        # The result's task is the task as it was enqueued: with that call's options.
        as_enqueued = task.using(priority=record.priority, queue_name=record.queue_name,
                                 run_after=record.run_after)
        return self.to_django(to_result(record, self.kubetasks), as_enqueued)

    def to_django(self, result: TaskResult[Any], task: Any) -> Any:
        # Django knows no CANCELLED: a cancelled task did not run, which Django calls FAILED.
        status = (DjangoStatus.FAILED if result.status == TaskResultStatus.CANCELLED
                  else DjangoStatus(result.status.value))
        django_result = DjangoTaskResult(
            task=task, id=result.id, status=status, enqueued_at=result.enqueued_at,
            started_at=result.started_at, finished_at=result.finished_at,
            last_attempted_at=result.last_attempted_at, args=result.args, kwargs=result.kwargs,
            backend=self.alias,
            errors=[DjangoTaskError(exception_class_path=e.exception_class_path,
                                    traceback=e.traceback) for e in result.errors],
            worker_ids=list(result.worker_ids),
        )
        object.__setattr__(django_result, "_return_value", result._return_value)
        return django_result

    def _connection(self) -> Any:
        """Django's own psycopg connection, when enqueueing in its transaction."""
        if self.database_alias is None:
            return None
        from django.db import connections

        wrapper = connections[self.database_alias]
        wrapper.ensure_connection()
        return wrapper.connection

    def close(self) -> None:
        """The connection pool is shared by every thread's backend: it stays open."""
