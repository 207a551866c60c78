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

from typing import Any

from kubetasks.backends.postgres import PostgresBackend
from kubetasks.config import Settings
from kubetasks.contrib.django.compat import BaseTaskBackend, normalize_json, task_enqueued
from kubetasks.contrib.django.compat import TaskResultDoesNotExist as DjangoDoesNotExist
from kubetasks.contrib.django.results import (
    as_enqueued,
    is_stand_in,
    requested_context,
    stand_in,
    to_django,
)
from kubetasks.contrib.django.running import runner
from kubetasks.exceptions import NotJSONError, TaskResultDoesNotExist
from kubetasks.records import to_result
from kubetasks.result import TaskResult
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


def _as_json(task: Any, args: Any, kwargs: Any) -> tuple[Any, Any]:
    """The arguments as Django makes them JSON (tuples become lists, bytes text), or
    ``NotJSONError`` — a ``TypeError`` too, as Django raises — in Django's words."""
    try:
        return normalize_json(args), normalize_json(kwargs)
    except (TypeError, ValueError) as error:
        raise NotJSONError(f"{error} in the arguments of task {task.module_path}: use None, "
                           "bool, int, float, str, bytes, lists or dicts") from None


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
        if is_stand_in(task):
            return
        # Called when a task is defined: register it so that a worker importing the
        # module can run it, by name, without importing anything named by the database.
        _django_tasks.setdefault(task.module_path, task)
        if task.module_path not in registry:
            register(Task(func=runner(task, type(self)), name=task.module_path,
                          queue_name=task.queue_name, priority=task.priority,
                          max_attempts=self.max_attempts, takes_context=True))

    def enqueue(self, task: Any, args: Any, kwargs: Any) -> Any:
        self.validate_task(task)
        args, kwargs = _as_json(task, args, kwargs)
        defined = registry[task.module_path]
        configured = defined.using(queue_name=task.queue_name, priority=task.priority,
                                   run_after=task.run_after, backend=self.kubetasks,
                                   context=requested_context(task.run_after),
                                   connection=self._connection())
        result = configured.enqueue(*args, **kwargs)
        django_result = self.to_django(result, task)
        task_enqueued.send(type(self), task_result=django_result)
        return django_result

    def get_result(self, result_id: str) -> Any:
        """Any task's result, also of a task whose module this process has not imported (its
        ``task`` then only names it: see ``results.stand_in``)."""
        try:
            record = self.kubetasks.store.get(result_id, connection=self._connection())
        except TaskResultDoesNotExist as error:
            raise DjangoDoesNotExist(str(error)) from error
        result = to_result(record, self.kubetasks)
        task = _django_tasks.get(record.task_name) or stand_in(
            record.task_name, alias=self.alias, queue_name=record.queue_name)
        return self.to_django(result, as_enqueued(task, result, alias=self.alias))

    def to_django(self, result: TaskResult[Any], task: Any) -> Any:
        return to_django(result, task, alias=self.alias)

    def _connection(self) -> Any:
        """Django's own psycopg connection, when enqueueing in its transaction."""
        if self.database_alias is None:
            return None
        from django.db import connections

        wrapper = connections[self.database_alias]
        wrapper.ensure_connection()
        return wrapper.connection

    def check(self, **kwargs: Any) -> list[Any]:
        """``manage.py check``: a database that would make enqueue non-transactional or
        unreachable is reported with what to set (see ``checks``)."""
        from kubetasks.contrib.django.checks import backend_messages

        return [*super().check(**kwargs), *backend_messages(self.alias, self.options)]

    def close(self) -> None:
        """The connection pool is shared by every thread's backend: it stays open."""
