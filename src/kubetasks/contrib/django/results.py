"""kubetasks results as Django ``TaskResult`` values, and the Django ``Task`` a result belongs to.

Django compares results whole: ``result.task`` carries the ``run_after`` the caller asked
for. kubetasks' row holds when the task may run next (the enqueue time when none was asked
for, a later time after a retry), so the request itself rides along in the task's context
under ``REQUESTED_RUN_AFTER``.
"""

from __future__ import annotations

import dataclasses
import types
from datetime import datetime
from typing import Any

from kubetasks.contrib.django.compat import Task as DjangoTask
from kubetasks.contrib.django.compat import TaskError as DjangoTaskError
from kubetasks.contrib.django.compat import TaskResult as DjangoTaskResult
from kubetasks.contrib.django.compat import TaskResultStatus as DjangoStatus
from kubetasks.payload import JSON
from kubetasks.result import TaskResult, TaskResultStatus

REQUESTED_RUN_AFTER = "django_run_after"
"""Key of a Django task's kubetasks context holding the ``run_after`` its caller set."""


def requested_context(run_after: datetime | None) -> dict[str, JSON]:
    """The kubetasks context that records a Django caller's ``run_after`` (none: nothing)."""
    return {} if run_after is None else {REQUESTED_RUN_AFTER: run_after.isoformat()}


def requested_run_after(context: dict[str, JSON]) -> datetime | None:
    text = context.get(REQUESTED_RUN_AFTER)
    return datetime.fromisoformat(text) if isinstance(text, str) else None


def as_enqueued(task: Any, result: TaskResult[Any], *, alias: str) -> Any:
    """``task`` with the options of the call that enqueued ``result`` on the backend
    ``alias``: Django's ``result.task``."""
    return dataclasses.replace(task, priority=result.priority, queue_name=result.queue_name,
                               run_after=requested_run_after(result.context), backend=alias)


def to_django(result: TaskResult[Any], task: Any, *, alias: str) -> Any:
    """``result`` as Django's ``TaskResult`` of ``task``. Django knows no CANCELLED: a
    cancelled task did not run, which Django calls FAILED."""
    status = (DjangoStatus.FAILED if result.status == TaskResultStatus.CANCELLED
              else DjangoStatus(result.status.value))
    django_result = DjangoTaskResult(
        task=task, id=result.id, status=status, enqueued_at=result.enqueued_at,
        started_at=result.started_at, finished_at=result.finished_at,
        last_attempted_at=result.last_attempted_at, args=result.args, kwargs=result.kwargs,
        backend=alias,
        errors=[DjangoTaskError(exception_class_path=e.exception_class_path,
                                traceback=e.traceback) for e in result.errors],
        worker_ids=list(result.worker_ids),
    )
    object.__setattr__(django_result, "_return_value", result._return_value)
    return django_result


def _not_imported(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("this task's module is not imported in this process: import it to call "
                       "the task")


def stand_in(task_name: str, *, alias: str, queue_name: str) -> Any:
    """A Django ``Task`` named ``task_name`` for a result whose module this process has not
    imported: its result can be read (as Django's database backend reads any result) without
    importing a module named by the database. Calling it raises; it is never registered."""
    module, _, qualname = task_name.rpartition(".")
    func = types.FunctionType(_not_imported.__code__, {}, qualname.rpartition(".")[2])
    func.__module__, func.__qualname__ = module, qualname
    func.kubetasks_stand_in = True  # type: ignore[attr-defined]
    return DjangoTask(func=func, backend=alias, queue_name=queue_name)


def is_stand_in(task: Any) -> bool:
    return bool(getattr(task.func, "kubetasks_stand_in", False))
