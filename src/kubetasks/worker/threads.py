"""The threads that run sync tasks, and the way their results get back to the event loop."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

R = TypeVar("R")
log = logging.getLogger(__name__)


def _nothing_follows() -> None:
    return None


class TaskThreads(Generic[R]):
    """A fixed set of daemon threads running jobs; their results are handed to ``deliver`` on
    the event loop, several at a time.

    Daemon threads, not ``ThreadPoolExecutor``: its threads are joined when the interpreter
    exits, so one sync task stuck past its timeout or past the grace period would keep the
    worker from exiting after it has put that task back.

    A thread that finishes a job asks ``follow`` for the next one and runs it at once; only when
    it gets None does it wait for ``submit``. Tasks claimed ahead thus start one after another
    without a trip through the event loop between them.

    Results are batched because waking the loop costs a system call: when many short tasks end
    together, one wake-up delivers all of them.
    """

    def __init__(self, size: int, loop: asyncio.AbstractEventLoop,
                 deliver: Callable[[list[R]], None], *,
                 follow: Callable[[], Callable[[], R] | None] = _nothing_follows,
                 name: str = "kubetasks-task") -> None:
        self._loop = loop
        self._deliver = deliver
        self._follow = follow
        self._jobs: queue.SimpleQueue[Callable[[], R]] = queue.SimpleQueue()
        self._done: collections.deque[R] = collections.deque()
        self._delivery_scheduled = False
        for number in range(size):
            threading.Thread(target=self._work, name=f"{name}-{number}", daemon=True).start()

    def submit(self, job: Callable[[], R]) -> None:
        """Run ``job`` on the next free thread. The caller keeps count of free threads."""
        self._jobs.put(job)

    def _work(self) -> None:
        job: Callable[[], R] | None = None
        while True:
            if job is None:
                job = self._jobs.get()
            try:
                result = job()
            except Exception:  # jobs report their own errors: this is a bug; keep the thread
                log.exception("unexpected error in a task thread")
                job = self._follow()
                continue
            # Asked before the result is handed over: whatever ``follow`` changed is seen by
            # the delivery of this result.
            job = self._follow()
            self._done.append(result)
            if not self._delivery_scheduled:
                self._delivery_scheduled = True
                with contextlib.suppress(RuntimeError):  # the loop is closed: the worker is gone
                    self._loop.call_soon_threadsafe(self._deliver_done)

    def _deliver_done(self) -> None:
        # Cleared before draining: a result appended after this line schedules another
        # delivery, so none is left behind (an extra, empty delivery is harmless).
        self._delivery_scheduled = False
        batch = []
        while self._done:
            batch.append(self._done.popleft())
        if batch:
            self._deliver(batch)
