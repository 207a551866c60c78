"""Task definitions: the ``@task`` decorator, ``Task.enqueue`` and the registry of task names."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import inspect
import itertools
import logging
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Concatenate, Generic, Literal, ParamSpec, TypeVar, overload

from kubetasks import collector
from kubetasks.backoff import Backoff, as_backoff
from kubetasks.exceptions import InvalidTaskError, UnknownTaskError
from kubetasks.payload import JSON
from kubetasks.request import (
    MAX_TASK_NAME,
    UNIQUE_WHILE,
    RequestTemplate,
    When,
    check_max_attempts,
    check_name,
    check_priority,
    check_queue_name,
    request_template,
)
from kubetasks.result import TaskContext, TaskResult
from kubetasks.schedules import declare as declare_schedule

if TYPE_CHECKING:
    import psycopg

    from kubetasks.backends.base import Backend

P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_QUEUE = "default"
UNIQUE_CONFLICTS = ("return", "raise")
"""What an enqueue does when a live task holds its unique key: return that task, or raise
``DuplicateTaskError``."""
UniqueKey = str | Callable[..., str]
log = logging.getLogger(__name__)

registry: dict[str, Task[..., Any]] = {}
"""Every task defined in this process, by name. Workers run only tasks found here."""


@dataclass(frozen=True, kw_only=True)
class Task(Generic[P, T]):
    """A function that can run in the background. Create with ``@task``; copy with ``using()``."""

    # With takes_context the function's first parameter is the TaskContext, which P omits.
    func: Callable[..., T] | Callable[..., Awaitable[T]]
    name: str
    queue_name: str = DEFAULT_QUEUE
    priority: int = 0
    max_attempts: int = 1
    retry_backoff: Backoff = field(default_factory=lambda: as_backoff(None))
    timeout: float | None = None
    batch_size: int | None = None
    takes_context: bool = False
    run_after: When | None = None
    expected_at: When | None = None
    context: Mapping[str, JSON] = field(default_factory=dict)
    unique_key: UniqueKey | None = field(default=None, compare=False)
    unique_while: str = "ready_or_running"
    unique_conflict: str = "return"
    backend: Backend | None = field(default=None, compare=False)
    connection: psycopg.Connection[Any] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        check_name("task name", self.name, MAX_TASK_NAME)
        check_queue_name(self.queue_name, None)
        check_priority(self.priority)
        check_max_attempts(self.max_attempts)
        if self.timeout is not None and not 0 < self.timeout < math.inf:
            raise InvalidTaskError(
                f"timeout {self.timeout!r} of task {self.name} must be a finite number of "
                "seconds > 0")
        if self.batch_size is not None and (
            isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int)
            or self.batch_size < 1
        ):
            raise InvalidTaskError(f"batch_size {self.batch_size!r} of task {self.name} must be an int >= 1")
        if self.unique_while not in UNIQUE_WHILE:
            raise InvalidTaskError(f"unique_while {self.unique_while!r} of task {self.name} is "
                                   f"invalid: use one of {', '.join(map(repr, UNIQUE_WHILE))}")
        if self.unique_conflict not in UNIQUE_CONFLICTS:
            raise InvalidTaskError(f"unique_conflict {self.unique_conflict!r} of task {self.name} "
                                   f"is invalid: use one of {', '.join(map(repr, UNIQUE_CONFLICTS))}")

    @functools.cached_property
    def is_async(self) -> bool:
        """Asked for every task a worker starts: worked out once (``inspect`` unwraps the
        function each time)."""
        return inspect.iscoroutinefunction(self.func)

    def using(
        self,
        *,
        queue_name: str | None = None,
        priority: int | None = None,
        run_after: When | None = None,
        expected_at: When | None = None,
        context: Mapping[str, JSON] | None = None,
        backend: Backend | None = None,
        connection: psycopg.Connection[Any] | None = None,
        unique_key: UniqueKey | None = None,
        unique_while: Literal["ready", "ready_or_running"] | None = None,
        unique_conflict: Literal["return", "raise"] | None = None,
    ) -> Task[P, T]:
        """A copy with other enqueue options.

        ``connection`` enqueues on the caller's psycopg connection, inside its open
        transaction: the task exists if and only if that transaction commits.

        ``unique_key`` (a str, or a function of the call's arguments that returns one) makes
        the task unique among live tasks of its name: while one holds the key, an enqueue
        returns that task (``unique_conflict="raise"``: raises ``DuplicateTaskError``). A task
        holds its key while READY and not yet started (``unique_while="ready"``), or until it
        finishes (``"ready_or_running"``, the default)::

            refresh.using(unique_key=lambda account_id: f"account-{account_id}").enqueue(7)
        """
        changes: dict[str, Any] = {
            "queue_name": queue_name, "priority": priority, "run_after": run_after,
            "expected_at": expected_at, "context": context, "backend": backend,
            "connection": connection, "unique_key": unique_key, "unique_while": unique_while,
            "unique_conflict": unique_conflict,
        }
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def get_backend(self) -> Backend:
        if self.backend is not None:
            return self.backend
        from kubetasks.config import get_backend

        return get_backend()

    def request_template(self, *, backend: Backend, now: datetime) -> RequestTemplate:
        """This task's enqueue options, checked once for all the calls of one enqueue."""
        return request_template(
            task_name=self.name, func=self.func, takes_context=self.takes_context,
            queue_name=self.queue_name, priority=self.priority, max_attempts=self.max_attempts,
            run_after=self.run_after, expected_at=self.expected_at, context=self.context,
            allowed_queues=backend.allowed_queues, now=now, unique_while=self.unique_while,
        )

    def unique_key_of(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> str | None:
        """The unique key of one call: ``unique_key`` itself, or what it returns for the call's
        arguments."""
        if self.unique_key is None or isinstance(self.unique_key, str):
            return self.unique_key
        try:
            key = self.unique_key(*args, **kwargs)
        except Exception as error:
            raise InvalidTaskError(f"unique_key function of task {self.name} failed for args "
                                   f"{list(args)!r}, kwargs {dict(kwargs)!r}: {error!r}") from None
        if not isinstance(key, str):
            raise InvalidTaskError(f"unique_key function of task {self.name} returned {key!r}; "
                                   "return a str")
        return key

    def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> TaskResult[T]:
        """Enqueue one call; validated before anything is written."""
        return self._enqueue_calls([(args, kwargs)])[0]

    async def aenqueue(self, *args: P.args, **kwargs: P.kwargs) -> TaskResult[T]:
        return await asyncio.to_thread(self.enqueue, *args, **kwargs)

    def enqueue_many(self, calls: Iterable[Sequence[Any] | Mapping[str, Any]]) -> list[TaskResult[T]]:
        """Enqueue many calls in one round trip. Each call is a tuple of positional
        arguments or a dict of keyword arguments: ``enqueue_many([(1,), (2,), {"user_id": 3}])``.
        All are checked first; if one is bad, none is written."""
        pairs: list[tuple[Sequence[Any], Mapping[str, Any]]] = []
        for index, call in enumerate(calls):
            if isinstance(call, Mapping):
                pairs.append(((), call))
            elif isinstance(call, (tuple, list)):
                pairs.append((call, {}))
            else:
                raise InvalidTaskError(
                    f"call {index} of enqueue_many is {call!r}: use a tuple of positional "
                    "arguments or a dict of keyword arguments")
        return self._enqueue_calls(pairs)

    def enqueue_batched(self, items: Iterable[Any], *args: Any, batch_size: int | None = None,
                        **kwargs: Any) -> list[TaskResult[T]]:
        """Split ``items`` (any iterable, a generator too) into lists of ``batch_size``
        (default: the task's) and enqueue one task per list, which it receives as its first
        argument (Tryton's ``queue_batch``)."""
        size = self.batch_size if batch_size is None else batch_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise InvalidTaskError(f"batch_size {size!r} is invalid: use an int >= 1 "
                                   f"(or set batch_size on task {self.name})")
        try:
            iterator = iter(items)
        except TypeError:
            raise InvalidTaskError(f"items {items!r} of enqueue_batched are not iterable: "
                                   "give a list, a tuple or any iterable") from None
        chunks = iter(lambda: list(itertools.islice(iterator, size)), [])
        return self._enqueue_calls([((chunk, *args), kwargs) for chunk in chunks])

    def _enqueue_calls(self, calls: Sequence[tuple[Sequence[Any], Mapping[str, Any]]],
                       ) -> list[TaskResult[T]]:
        backend = self.get_backend()
        backend.validate_task(self, connection=self.connection)
        template = self.request_template(backend=backend, now=datetime.now(UTC))
        with collector.paused(len(calls)):  # the checks and key functions, never a task's body
            requests = [template.request(args, kwargs, self.unique_key_of(args, kwargs))
                        for args, kwargs in calls]
        return backend.enqueue_many(self, requests, connection=self.connection)


@overload
def task(function: Callable[P, Awaitable[T]], /) -> Task[P, T]: ...
@overload
def task(function: Callable[P, T], /) -> Task[P, T]: ...
@overload
def task(
    *,
    name: str | None = None,
    queue_name: str = DEFAULT_QUEUE,
    priority: int = 0,
    max_attempts: int = 1,
    retry_backoff: Backoff | Mapping[int, float] | None = None,
    timeout: float | None = None,
    batch_size: int | None = None,
    schedule: str | timedelta | None = None,
    takes_context: Literal[False] = False,
) -> Callable[[Callable[P, T]], Task[P, T]]: ...
@overload
def task(
    *,
    name: str | None = None,
    queue_name: str = DEFAULT_QUEUE,
    priority: int = 0,
    max_attempts: int = 1,
    retry_backoff: Backoff | Mapping[int, float] | None = None,
    timeout: float | None = None,
    batch_size: int | None = None,
    schedule: str | timedelta | None = None,
    takes_context: Literal[True],
) -> Callable[[Callable[Concatenate[TaskContext, P], T]], Task[P, T]]: ...


def task(
    function: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    queue_name: str = DEFAULT_QUEUE,
    priority: int = 0,
    max_attempts: int = 1,
    retry_backoff: Backoff | Mapping[int, float] | None = None,
    timeout: float | None = None,
    batch_size: int | None = None,
    schedule: str | timedelta | None = None,
    takes_context: bool = False,
) -> Any:
    """Define a task, usable as ``@task`` or ``@task(queue_name="emails", max_attempts=3)``.

    ``retry_backoff`` is exponential with jitter by default; a mapping such as
    ``{1: 10, 5: 60}`` waits 10 s after attempts 1-4 and 60 s from the fifth.

    ``schedule`` enqueues the task on a cron expression in UTC (``"0 3 * * *"``) or at an
    interval (``timedelta(minutes=5)``), without arguments; ``kubetasks.schedule(...)`` takes a
    time zone, arguments and a policy for missed ticks.
    """

    def define(func: Callable[..., Any]) -> Task[..., Any]:
        defined: Task[..., Any] = Task(
            func=func, name=name or f"{func.__module__}.{func.__qualname__}",
            queue_name=queue_name, priority=priority, max_attempts=max_attempts,
            retry_backoff=as_backoff(retry_backoff), timeout=timeout, batch_size=batch_size,
            takes_context=takes_context,
        )
        register(defined)
        if schedule is not None:
            declare_schedule(defined, schedule)
        return defined

    return define(function) if function is not None else define


def register(defined: Task[..., Any]) -> None:
    existing = registry.get(defined.name)
    if existing is not None and existing.func is not defined.func:
        existing_func: Any = existing.func
        func: Any = defined.func
        if (existing_func.__module__, existing_func.__qualname__) != (func.__module__, func.__qualname__):
            raise InvalidTaskError(
                f"task name {defined.name!r} is already used by {existing_func.__module__}."
                f"{existing_func.__qualname__}; pass name=... to tell them apart")
        log.debug("task %s redefined (module reloaded)", defined.name)
    registry[defined.name] = defined


def resolve_task(task_name: str) -> Task[..., Any]:
    """The registered task of that name. Never imports anything named by the database."""
    found = registry.get(task_name)
    if found is None:
        known = ", ".join(sorted(registry)) or "none"
        raise UnknownTaskError(
            f"task {task_name!r} is not registered in this process (registered: {known}); "
            "import the module that defines it (kubetasks worker --import ...)")
    return found
