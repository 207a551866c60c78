"""One attempt of one claimed task: find its function, bind its arguments, run it, encode the
return value. Nothing here writes to the database; the outcome is a plain value."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import cache
from time import perf_counter
from typing import Any

from kubetasks import tracing
from kubetasks.config import get_backend
from kubetasks.exceptions import InvalidTaskError, TaskTimeout
from kubetasks.execution import call_arguments, encode_return
from kubetasks.payload import dumps
from kubetasks.records import TaskRecord, to_result
from kubetasks.request import bind_error
from kubetasks.task import Task, resolve_task


@dataclass(frozen=True, slots=True)
class Succeeded:
    return_json: str
    seconds: float


@dataclass(frozen=True, slots=True)
class Failed:
    error: BaseException
    seconds: float


@dataclass(frozen=True, slots=True)
class Cancelled:
    """The attempt ended, however, after someone asked to cancel the task: it ends CANCELLED."""

    seconds: float


Result = Succeeded | Failed | Cancelled


@dataclass(frozen=True, slots=True)
class Call:
    """A claimed task matched to a registered function, its arguments bound: ready to run."""

    task: Task[..., Any]
    args: list[Any]
    kwargs: dict[str, Any]
    record: TaskRecord | None = None


@dataclass(frozen=True, slots=True)
class TaskScope:
    """Calls a worker makes around every task function, where the function runs: ``before`` and
    ``after`` on the thread of a plain function, ``abefore`` and ``aafter`` awaited on the loop
    around an ``async def`` one. A Django worker closes the ORM connections that a database
    restart broke or ``CONN_MAX_AGE`` retired, as Django does around each request. An error in
    one fails the attempt like an error of the task."""

    before: Callable[[], None]
    after: Callable[[], None]
    abefore: Callable[[], Awaitable[None]]
    aafter: Callable[[], Awaitable[None]]


_scopes: list[TaskScope] = []


def add_task_scope(scope: TaskScope) -> None:
    """Make this process's worker call ``scope`` around every task it runs (once per scope)."""
    if scope not in _scopes:
        _scopes.append(scope)


def prepare(record: TaskRecord) -> Call:
    """The call a claimed task stands for. A task's context reads its result back through the
    process-wide backend (``kubetasks worker`` configures it on the worker's database).

    Raises ``UnknownTaskError`` if no imported module registered the task's name, and
    ``InvalidTaskError`` if the stored arguments do not fit the function. Both are checked
    before running, so a ``TypeError`` raised inside the task is never mistaken for them.
    """
    task = resolve_task(record.task_name)
    if not isinstance(record.args, list) or not isinstance(record.kwargs, dict):
        raise InvalidTaskError(
            f"task {record.id} ({task.name}) has args {_shown(record.args)} and kwargs "
            f"{_shown(record.kwargs)}: args must be a JSON list and kwargs a JSON object")
    # A context carries the task's result, which reads itself back through the backend.
    args, kwargs = call_arguments(task, record.args, record.kwargs,
                                  lambda: to_result(record, get_backend()))
    error = bind_error(task.func, record.args, record.kwargs, task.takes_context)
    if error is not None:
        signature = _signature(task.func)
        raise InvalidTaskError(
            f"stored arguments of task {record.id} do not fit {task.name}{_bare(signature)}: "
            f"{error} (args={_shown(record.args)}, kwargs={_shown(record.kwargs)})") from None
    return Call(task=task, args=args, kwargs=kwargs, record=record)


def run_sync(call: Call) -> Result:
    """Run a plain function in the calling thread (a worker thread), in its span when
    tracing is active (``tracing.active``)."""
    if call.record is None or not tracing.active():
        return _run_sync(call)
    with _span(call.record) as span:
        result = _run_sync(call)
        _outcome(span, call, result)
    return result


def _run_sync(call: Call) -> Result:
    started = perf_counter()
    try:
        value = _scoped_sync(call) if _scopes else call.task.func(*call.args, **call.kwargs)
        seconds = perf_counter() - started
        return Succeeded(_encoded(call.task, value), seconds)
    except BaseException as error:  # a task's SystemExit must not end the worker's thread
        return Failed(error, perf_counter() - started)


def _scoped_sync(call: Call) -> Any:
    for scope in _scopes:
        scope.before()
    try:
        return call.task.func(*call.args, **call.kwargs)
    finally:
        for scope in reversed(_scopes):
            scope.after()


async def _scoped_async(call: Call) -> Any:
    for scope in _scopes:
        await scope.abefore()
    try:
        return await call.task.func(*call.args, **call.kwargs)
    finally:
        for scope in reversed(_scopes):
            await scope.aafter()


async def run_async(call: Call) -> Result:
    """Run an ``async def`` task on the worker's event loop, within its timeout, in its span
    when tracing is active (``tracing.active``)."""
    if call.record is None or not tracing.active():
        return await _run_async(call)
    with _span(call.record) as span:
        try:
            result = await _run_async(call)
        except asyncio.CancelledError:
            tracing.outcome(span, "cancelled")
            raise
        _outcome(span, call, result)
    return result


def _span(record: TaskRecord) -> AbstractContextManager[tracing.Span]:
    return tracing.attempt_span(task_name=record.task_name, task_id=record.id,
                                queue_name=record.queue_name, attempt=record.attempts,
                                parent=tracing.parent_of(record.trace_context))


def _outcome(span: tracing.Span, call: Call, result: Result) -> None:
    if call.task.takes_context and call.args[0].cancelled:
        tracing.outcome(span, "cancelled")
    elif isinstance(result, Failed):
        kind = "timeout" if isinstance(result.error, TaskTimeout) else "failed"
        tracing.outcome(span, kind, result.error)
    else:
        tracing.outcome(span, "succeeded")


async def _run_async(call: Call) -> Result:
    started = perf_counter()
    # No timeout scope for a task without a timeout: entering one was a tenth of the event
    # loop's time in a worker running short async tasks.
    scope = None if call.task.timeout is None else asyncio.timeout(call.task.timeout)
    try:
        running = _scoped_async(call) if _scopes else call.task.func(*call.args, **call.kwargs)
        if scope is None:
            value = await running
        else:
            async with scope:
                value = await running
        seconds = perf_counter() - started
        return Succeeded(_encoded(call.task, value), seconds)
    except asyncio.CancelledError:
        raise
    except BaseException as error:  # see run_sync
        if isinstance(error, TimeoutError) and scope is not None and scope.expired():
            error = timed_out(call.task)
        return Failed(error, perf_counter() - started)


def timed_out(task: Task[..., Any]) -> TaskTimeout:
    message = f"task {task.name} ran longer than its timeout of {task.timeout:g} s"
    if not task.is_async:
        # A thread cannot be stopped from outside: say so, since its effects may still happen.
        message += "; its thread could not be stopped and was left to finish on its own"
    return TaskTimeout(message)


def _encoded(task: Task[..., Any], value: Any) -> str:
    # encode_return refuses what PostgreSQL's jsonb cannot store (NUL, lone surrogates).
    return encode_return(task.name, value)


@cache
def _signature(func: Callable[..., Any]) -> inspect.Signature:
    return inspect.signature(func)


def _bare(signature: inspect.Signature) -> inspect.Signature:
    """The parameters alone: postponed annotations would print as quoted strings."""
    return signature.replace(
        parameters=[p.replace(annotation=p.empty) for p in signature.parameters.values()],
        return_annotation=signature.empty)


def _shown(value: Any, limit: int = 200) -> str:
    try:
        text = dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
