"""Tasks run by real ``kubetasks worker`` processes in the worker tests.

Tasks leave evidence by appending a line to a file named in their arguments; appends of short
lines are atomic, so several processes can share one file.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

from kubetasks import FailNow, Retry, TaskContext, task

QUEUE = "worker-tests"


def append(path: str, line: str) -> None:
    with Path(path).open("a", encoding="utf-8") as file:
        file.write(line + "\n")


@task(queue_name=QUEUE)
def record(path: str, text: str, seconds: float = 0.0) -> str:
    time.sleep(seconds)
    append(path, text)
    return text


@task(queue_name=QUEUE)
async def record_async(path: str, text: str, seconds: float = 0.0) -> str:
    await asyncio.sleep(seconds)
    append(path, text)
    return text


@task(queue_name=QUEUE)
def record_start_time(path: str) -> None:
    append(path, repr(time.time()))


@task(queue_name=QUEUE, takes_context=True)
def slow_until_lost(context: TaskContext, path: str, seconds: float) -> str:
    """Slow on its first delivery; quick once it has been put back as lost."""
    lost = context.task_result.lost_count
    if lost == 0:
        time.sleep(seconds)
    append(path, f"finished lost={lost}")
    return f"lost={lost}"


class Boom(Exception):
    pass


@task(queue_name=QUEUE, max_attempts=3, retry_backoff={1: 1, 2: 2}, takes_context=True)
def always_fails(context: TaskContext, path: str) -> None:
    append(path, f"{context.attempt} {time.time()!r}")
    raise Boom(f"failure number {context.attempt}")


@task(queue_name=QUEUE, max_attempts=2, takes_context=True)
def asks_to_retry(context: TaskContext, path: str) -> str:
    append(path, f"{context.attempt} {time.time()!r}")
    if context.attempt == 1:
        raise Retry("not yet", delay=0.5)
    return "second time lucky"


@task(queue_name=QUEUE, max_attempts=5)
def fails_now() -> None:
    raise FailNow("this cannot work, do not retry")


class Unprintable(Exception):
    """Neither printable (``__str__`` raises) nor picklable (it holds a lock)."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()

    def __str__(self) -> str:
        raise RuntimeError("__str__ is broken")


@task(queue_name=QUEUE)
def raises_unprintable() -> None:
    raise Unprintable()


@task(queue_name=QUEUE)
def returns_object() -> object:
    return object()


@task(queue_name=QUEUE)
def returns_nul() -> str:
    return "a\x00b"


@task(queue_name=QUEUE)
def add(a: int, b: int) -> int:
    return a + b


@task(queue_name=QUEUE, timeout=0.3)
def sleeps_past_timeout(seconds: float) -> str:
    time.sleep(seconds)
    return "too late"


@task(queue_name=QUEUE, timeout=0.3)
async def sleeps_past_timeout_async(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "too late"


@task(queue_name=QUEUE)
async def cancels_itself() -> None:
    """Awaits something that gets cancelled, as a library's future can be."""
    import asyncio

    waiter = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(waiter.cancel)
    await waiter
