"""Holding off Python's cycle collector while a large batch builds its objects."""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

PAUSE_AFTER = 1_000
"""A batch of at least this many tasks holds off the cycle collector while it builds its
requests, its rows and its results."""

_lock = threading.Lock()
_pauses = 0
_turned_off = False


def paused(count: int) -> contextlib.AbstractContextManager[None]:
    """Hold off the cycle collector (``gc.disable``) for ``count`` >= ``PAUSE_AFTER`` objects
    built in a row that make no reference cycles: each collection their allocations set off
    walks every object the process holds, and they were a third of a 50,000-task
    ``enqueue_many``'s CPU (bench/PROFILE-worker.md §10). Reference counting frees as usual.

    Only kubetasks' own building goes inside: never task code, never a wait on a lock. The
    collector is off for the whole process meanwhile (for every thread); pauses that overlap
    share one, and the last to end turns the collector back on, if the first found it on. An
    application that turns it off itself during a pause finds it on again afterwards."""
    return _NOT_PAUSED if count < PAUSE_AFTER else _paused()


_NOT_PAUSED = contextlib.nullcontext()
"""What a batch under ``PAUSE_AFTER`` enters: nothing to do, and no generator to make (a
one-task enqueue enters two pauses)."""


@contextlib.contextmanager
def _paused() -> Iterator[None]:
    global _pauses, _turned_off
    with _lock:
        if _pauses == 0:
            _turned_off = gc.isenabled()
            gc.disable()
        _pauses += 1
    try:
        yield
    finally:
        with _lock:
            _pauses -= 1
            if _pauses == 0 and _turned_off:
                gc.enable()
