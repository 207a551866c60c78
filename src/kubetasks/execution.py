"""Running a task's function: shared by the Immediate backend and the worker."""

from __future__ import annotations

import asyncio
import inspect
import traceback
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from kubetasks.payload import dumps, plain
from kubetasks.result import TaskContext, TaskError, TaskResult, TaskResultStatus

if TYPE_CHECKING:
    from kubetasks.task import Task


def call_arguments(task: Task[..., Any], args: Sequence[Any], kwargs: Mapping[str, Any],
                   result: Callable[[], TaskResult[Any]]) -> tuple[list[Any], dict[str, Any]]:
    """The arguments to call ``task`` with: copies of the stored ones, and its context first
    when it takes one. ``result`` is called only then: building a result costs more than a
    short task does."""
    call_args = list(args)
    if task.takes_context:
        running = result()
        call_args.insert(0, TaskContext(task_result=running, context=dict(running.context)))
    return call_args, dict(kwargs)


def encode_return(task_name: str, value: Any) -> str:
    """The return value as JSON, or ``TypeError`` naming what cannot be stored."""
    if value is None:  # what most tasks return: no walk, no encoder
        return "null"
    return dumps(plain(value, f"return value of task {task_name}"))


def error_from_exception(error: BaseException, *, attempt: int | None = None,
                         worker_id: str | None = None) -> TaskError:
    return TaskError.of_class(type(error), _safe_str(error),
                              traceback="".join(traceback.format_exception(error)),
                              attempt=attempt, worker_id=worker_id)


def _safe_str(error: BaseException) -> str:
    try:
        return str(error)
    except Exception as broken:  # an exception whose __str__ raises must still be recorded
        return f"<str() of {type(error).__qualname__} failed: {type(broken).__qualname__}>"


def run_inline(task: Task[..., Any], result: TaskResult[Any]) -> None:
    """Run ``task`` for ``result`` now, in this thread, and record the outcome on the result."""
    now = datetime.now(UTC)
    result.status = TaskResultStatus.RUNNING
    result.started_at = result.last_attempted_at = now
    result.attempts += 1
    try:
        args, kwargs = call_arguments(task, result.args, result.kwargs, lambda: result)
        value = task.func(*args, **kwargs)
        if inspect.isawaitable(value):
            value = asyncio.run(_awaited(value))
        encode_return(task.name, value)
    except Exception as error:
        result.errors.append(error_from_exception(error, attempt=result.attempts))
        result.status = TaskResultStatus.FAILED
    else:
        result._return_value = value
        result.status = TaskResultStatus.SUCCESSFUL
    result.finished_at = datetime.now(UTC)


async def _awaited(awaitable: Any) -> Any:
    return await awaitable
