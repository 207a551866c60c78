"""A Django task as ``kubetasks worker`` runs it: the way Django runs a view (fresh ORM
connections, for every task the worker runs, kubetasks' own ``@task`` functions too) and the
way Django's own backends run a task (its ``TaskContext``, its ``task_started`` and
``task_finished`` signals, its JSON rules for the return value).

The kubetasks task registered for a Django task always takes kubetasks' context, which says
which result is running; the Django function gets Django's ``TaskContext`` when it asked for
one, and nothing otherwise.
"""

from __future__ import annotations

import functools
import inspect
import traceback
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from asgiref.sync import sync_to_async
from django.db import close_old_connections

from kubetasks.contrib.django.compat import (
    BaseTaskBackend,
    TaskContext,
    normalize_json,
    task_finished,
    task_started,
)
from kubetasks.contrib.django.compat import TaskError as DjangoTaskError
from kubetasks.contrib.django.compat import TaskResultStatus as DjangoStatus
from kubetasks.contrib.django.results import as_enqueued, to_django
from kubetasks.exceptions import FailNow, InvalidTaskError
from kubetasks.result import TaskContext as KubeTasksContext
from kubetasks.worker.attempt import TaskScope, add_task_scope

FINAL = (FailNow, InvalidTaskError)
"""Errors after which kubetasks runs no other attempt, whatever attempts are left."""

_close_async = sync_to_async(close_old_connections)
"""In the thread where the ORM calls of ``async def`` code run (``sync_to_async``'s)."""

FRESH_CONNECTIONS = TaskScope(before=close_old_connections, after=close_old_connections,
                              abefore=_close_async, aafter=_close_async)
"""Before and after each task, as Django does around each request: an ORM connection that a
PostgreSQL restart broke, or that ``CONN_MAX_AGE`` retired, is closed, so the task opens a new
one instead of failing on it."""


def close_connections_around_tasks() -> None:
    """Make this process's worker close stale ORM connections around every task it runs. The
    Django worker entry points call it (``manage.py kubetasks_worker``,
    ``kubetasks.contrib.django.setup``), and so does registering a Django task."""
    add_task_scope(FRESH_CONNECTIONS)


class DjangoAttempt:
    """One attempt of a Django task, seen as Django's ``TaskResult``, and the signals Django
    sends about it. ``sender`` is the backend class, as Django's own backends send."""

    def __init__(self, context: KubeTasksContext, task: Any, sender: type[Any]) -> None:
        self.kubetasks = context.task_result
        self.result = to_django(self.kubetasks, as_enqueued(task, self.kubetasks,
                                                            alias=task.backend),
                                alias=task.backend)
        self.task = task
        self.sender = sender

    def arguments(self, args: Sequence[Any]) -> tuple[Any, ...]:
        if self.task.takes_context:
            return (TaskContext(task_result=self.result), *args)
        return tuple(args)

    def started(self) -> None:
        task_started.send(sender=self.sender, task_result=self.result)

    def succeeded(self, value: Any) -> None:
        self._finish(DjangoStatus.SUCCESSFUL)
        object.__setattr__(self.result, "_return_value", value)
        task_finished.send(sender=self.sender, task_result=self.result)

    def failed(self, error: BaseException) -> None:
        """Django's ``task_finished`` once no attempt is left (Django has no retries: an
        attempt kubetasks will run again has not finished the task)."""
        attempt, most = self.kubetasks.attempts, self.kubetasks.max_attempts
        if attempt < most and not isinstance(error, FINAL):
            return
        kind = type(error)
        self.result.errors.append(DjangoTaskError(
            exception_class_path=f"{kind.__module__}.{kind.__qualname__}",
            traceback="".join(traceback.format_exception(error))))
        self._finish(DjangoStatus.FAILED)
        # Called inside the handler of ``error`` (asgiref's sync_to_async carries it into its
        # thread): Django's receivers, its own log line among them, read ``sys.exc_info()``.
        task_finished.send(sender=self.sender, task_result=self.result)

    def _finish(self, status: DjangoStatus) -> None:
        object.__setattr__(self.result, "status", status)
        object.__setattr__(self.result, "finished_at", datetime.now(UTC))


def runner(task: Any, sender: type[BaseTaskBackend]) -> Callable[..., Any]:
    """The function kubetasks registers for the Django task ``task``."""
    close_connections_around_tasks()
    func = task.func
    if inspect.iscoroutinefunction(func):
        @functools.wraps(func)
        async def run_async(context: KubeTasksContext, *args: Any, **kwargs: Any) -> Any:
            attempt = DjangoAttempt(context, task, sender)
            await sync_to_async(attempt.started)()
            try:
                value = normalize_json(await func(*attempt.arguments(args), **kwargs))
            except BaseException as error:
                await sync_to_async(attempt.failed)(error)
                raise
            else:
                await sync_to_async(attempt.succeeded)(value)
                return value

        return _with_context_first(run_async, task)

    @functools.wraps(func)
    def run(context: KubeTasksContext, *args: Any, **kwargs: Any) -> Any:
        attempt = DjangoAttempt(context, task, sender)
        attempt.started()
        try:
            value = normalize_json(func(*attempt.arguments(args), **kwargs))
        except BaseException as error:
            attempt.failed(error)
            raise
        else:
            attempt.succeeded(value)
            return value

    return _with_context_first(run, task)


def _with_context_first(wrapper: Callable[..., Any], task: Any) -> Callable[..., Any]:
    """The Django function's signature with kubetasks' context first, so that kubetasks
    checks the arguments of an enqueue and of a stored call against the real parameters."""
    parameters = list(inspect.signature(task.func).parameters.values())
    if task.takes_context:
        parameters = parameters[1:]
    context = inspect.Parameter("kubetasks_context", inspect.Parameter.POSITIONAL_ONLY)
    wrapper.__signature__ = inspect.Signature([context, *parameters])  # type: ignore[attr-defined]
    return wrapper
