"""Turning an enqueue call into a validated, serialised request — pure, no I/O.

Every check happens here, before any backend writes anything, so a bad call leaves no trace.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from kubetasks.exceptions import InvalidTaskError, NotJSONError
from kubetasks.payload import JSON, check_text, dumps, plain

MIN_PRIORITY = -100
MAX_PRIORITY = 100
MAX_CONTEXT_BYTES = 8192
MAX_ATTEMPTS = 2**31 - 1
"""The database's ``integer``."""

MAX_QUEUE_NAME = 100
"""Characters in a queue name: what the TaskQueue CRD's ``queueName`` allows, well within what
NOTIFY's payload and the claim index hold."""

MAX_TASK_NAME = 500
"""Characters in a task name: well within what the index of learned durations holds."""

EARLIEST = datetime(1, 1, 2, tzinfo=UTC)
LATEST = datetime(9999, 12, 30, 23, 59, 59, 999999, tzinfo=UTC)
"""The times a task may carry. PostgreSQL holds far more, but every reader turns them into
Python datetimes (years 1 to 9999) in its own time zone, up to a day away from UTC."""

When = datetime | timedelta

MAX_UNIQUE_KEY = 500
"""Characters in a unique key: well within what the unique index holds."""

UNIQUE_WHILE = ("ready", "ready_or_running")
"""How long a task holds its unique key: while READY and not yet started, or while READY or
RUNNING (until it finishes, retries included)."""


@dataclass(frozen=True, slots=True)
class EnqueueRequest:
    """One task to write: its arguments already checked and serialised."""

    task_name: str
    queue_name: str
    priority: int
    args: list[JSON]
    kwargs: dict[str, JSON]
    context: dict[str, JSON]
    run_after: datetime | None
    expected_at: datetime | None
    max_attempts: int
    unique_key: str | None = None
    unique_while: str | None = None
    """One of ``UNIQUE_WHILE`` when ``unique_key`` is set, else None."""

    @property
    def args_json(self) -> str:
        return dumps(self.args)

    @property
    def kwargs_json(self) -> str:
        return dumps(self.kwargs)

    @property
    def context_json(self) -> str:
        return dumps(self.context)


def check_priority(priority: object) -> int:
    if isinstance(priority, bool) or not isinstance(priority, int) or not (
        MIN_PRIORITY <= priority <= MAX_PRIORITY
    ):
        raise InvalidTaskError(
            f"priority {priority!r} is invalid: use an int from {MIN_PRIORITY} to {MAX_PRIORITY} "
            "(higher runs first)"
        )
    return priority


def check_name(kind: str, name: object, limit: int) -> str:
    """A queue or task name PostgreSQL stores and NOTIFY carries unchanged."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidTaskError(f"{kind} {name!r} is invalid: use a non-empty str")
    if len(name) > limit:
        raise InvalidTaskError(f"{kind} {name[:limit]!r}... is {len(name)} characters long; "
                               f"use at most {limit}")
    try:
        check_text(name, kind)
    except ValueError as error:
        raise InvalidTaskError(str(error)) from None
    return name


def check_queue_name(queue_name: object, allowed: frozenset[str] | None) -> str:
    name = check_name("queue_name", queue_name, MAX_QUEUE_NAME)
    if allowed is not None and name not in allowed:
        raise InvalidTaskError(
            f"queue_name {name!r} is not one of the allowed queues {sorted(allowed)}"
        )
    return name


def check_unique(unique_key: object, unique_while: object) -> tuple[str | None, str | None]:
    """The key and its mode as stored: both None without a key."""
    if unique_while not in UNIQUE_WHILE:
        raise InvalidTaskError(f"unique_while {unique_while!r} is invalid: use one of "
                               f"{', '.join(repr(w) for w in UNIQUE_WHILE)}")
    if unique_key is None:
        return None, None
    return check_name("unique_key", unique_key, MAX_UNIQUE_KEY), str(unique_while)


def check_max_attempts(max_attempts: object) -> int:
    if (isinstance(max_attempts, bool) or not isinstance(max_attempts, int)
            or not 1 <= max_attempts <= MAX_ATTEMPTS):
        raise InvalidTaskError(
            f"max_attempts {max_attempts!r} is invalid: use an int from 1 to {MAX_ATTEMPTS}")
    return max_attempts


def resolve_when(name: str, value: When | None, now: datetime) -> datetime | None:
    """An absolute time in UTC from a timezone-aware datetime or a delay from ``now``, within
    ``EARLIEST`` and ``LATEST``."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        if value < timedelta(0):
            raise InvalidTaskError(f"{name} {value!r} is a negative delay; use a timedelta >= 0")
        if value > LATEST - now:
            raise InvalidTaskError(f"{name} {value!r} is a delay past {LATEST.isoformat()}, "
                                   "the latest time a task may carry")
        return now + value
    if isinstance(value, datetime):
        try:
            offset = value.utcoffset()
        except (TypeError, ValueError) as error:
            raise InvalidTaskError(f"{name} {value!r} has a tzinfo that fails: {error}") from None
        if offset is None:
            raise InvalidTaskError(
                f"{name} {value.isoformat()} is a naive datetime; give it a timezone "
                "(e.g. datetime.now(timezone.utc)) or pass a timedelta"
            )
        if not EARLIEST <= value <= LATEST:
            raise InvalidTaskError(
                f"{name} {value.isoformat()} is out of range: use a time from "
                f"{EARLIEST.isoformat()} to {LATEST.isoformat()}, which every reader in any "
                "time zone can hold")
        return value.astimezone(UTC)
    raise InvalidTaskError(f"{name} {value!r} is invalid: use a timezone-aware datetime or a timedelta")


def check_signature(func: Callable[..., Any], name: str, args: Sequence[Any],
                    kwargs: Mapping[str, Any], takes_context: bool) -> None:
    error = bind_error(func, args, kwargs, takes_context)
    if error is not None:
        raise InvalidTaskError(
            f"arguments do not match task {name}{_signature(func)}: {error}") from None


def bind_error(func: Callable[..., Any], args: Sequence[Any], kwargs: Mapping[str, Any],
               takes_context: bool) -> TypeError | None:
    """Why calling ``func`` with these arguments (after the context, if it takes one) would not
    bind, or None if it would. Whether a call binds depends only on how many positional
    arguments it has and the names of its keyword arguments, so a shape that bound once is not
    bound again (the enqueue and the worker both check every call)."""
    shape = (func, takes_context, len(args), tuple(kwargs))
    if shape in _bound_shapes:
        return None
    signature = _signature(func)
    if signature is None:  # builtins without a signature: nothing to check
        return None
    bound_args = (None, *args) if takes_context else tuple(args)
    try:
        signature.bind(*bound_args, **kwargs)
    except TypeError as error:
        return error
    if len(_bound_shapes) < MAX_BOUND_SHAPES:
        _bound_shapes.add(shape)
    return None


MAX_BOUND_SHAPES = 10_000
"""Call shapes remembered as binding: enough for every task's usual calls, bounded so that
calls with ever new keyword names cannot grow it without end."""

_bound_shapes: set[tuple[Callable[..., Any], bool, int, tuple[str, ...]]] = set()


@functools.lru_cache(maxsize=1024)
def _signature(func: Callable[..., Any]) -> inspect.Signature | None:
    """The function's signature, computed once: ``inspect.signature`` was a third of the
    Python time of a bulk enqueue."""
    try:
        return inspect.signature(func)
    except (TypeError, ValueError):
        return None


def serialisable(name: str, value: Any, path: str) -> Any:
    try:
        return plain(value, path)  # exactly as the worker will see it (tuples become lists)
    except TypeError as error:
        raise NotJSONError(f"task {name}: {error}") from None


@dataclass(frozen=True, slots=True)
class RequestTemplate:
    """What every call of one enqueue shares, checked once (``request_template``); ``request``
    checks what each call brings: its arguments and its unique key."""

    task_name: str
    func: Callable[..., Any]
    takes_context: bool
    queue_name: str
    priority: int
    max_attempts: int
    run_after: datetime | None
    expected_at: datetime | None
    context: dict[str, JSON]
    unique_while: str

    def request(self, args: Sequence[Any], kwargs: Mapping[str, Any],
                unique_key: str | None = None) -> EnqueueRequest:
        """Check one call and return the request a backend writes."""
        check_signature(self.func, self.task_name, args, kwargs, self.takes_context)
        key, key_while = check_unique(unique_key, self.unique_while)
        return EnqueueRequest(
            task_name=self.task_name,
            queue_name=self.queue_name,
            priority=self.priority,
            args=serialisable(self.task_name, list(args), "args"),
            kwargs=serialisable(self.task_name, dict(kwargs), "kwargs"),
            context=self.context,
            run_after=self.run_after,
            expected_at=self.expected_at,
            max_attempts=self.max_attempts,
            unique_key=key,
            unique_while=key_while,
        )


def request_template(
    *,
    task_name: str,
    func: Callable[..., Any],
    takes_context: bool,
    queue_name: str,
    priority: int,
    max_attempts: int,
    run_after: When | None,
    expected_at: When | None,
    context: Mapping[str, Any],
    allowed_queues: frozenset[str] | None,
    now: datetime,
    unique_while: str = "ready_or_running",
) -> RequestTemplate:
    """Check the options of an enqueue, once for all its calls (a bulk enqueue spent a third of
    its time checking them again for every task)."""
    run_at = resolve_when("run_after", run_after, now)
    deadline = resolve_when("expected_at", expected_at, now)
    if deadline is not None and deadline < (run_at or now):
        start = "run_after " + run_at.isoformat() if run_at else "now " + now.isoformat()
        raise InvalidTaskError(
            f"expected_at {deadline.isoformat()} is before {start}; a deadline must not be "
            "earlier than the time the task may start"
        )
    if not isinstance(context, Mapping):
        raise InvalidTaskError(f"context {context!r} is invalid: use a dict of JSON values")
    normal_context = serialisable(task_name, dict(context), "context")
    if normal_context and len(encoded := dumps(normal_context).encode()) > MAX_CONTEXT_BYTES:
        raise InvalidTaskError(
            f"context of task {task_name} is {len(encoded)} bytes; "
            f"keep it under {MAX_CONTEXT_BYTES} (ids and names, not data)"
        )
    check_unique(None, unique_while)
    return RequestTemplate(
        task_name=task_name, func=func, takes_context=takes_context,
        queue_name=check_queue_name(queue_name, allowed_queues),
        priority=check_priority(priority), max_attempts=check_max_attempts(max_attempts),
        run_after=run_at, expected_at=deadline, context=normal_context,
        unique_while=unique_while,
    )
