"""Long tasks to cancel while they run, for tests/integration/test_cancel_running.py."""

from __future__ import annotations

import asyncio
import time

from kubetasks import TaskContext, task


@task(max_attempts=3)
async def sleep_async(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "slept"


@task(takes_context=True, max_attempts=3)
def poll_sync(context: TaskContext, seconds: float) -> str:
    """Checks ``context.cancelled`` between steps, as a long sync task should."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if context.cancelled:
            raise RuntimeError("asked to stop")  # an error: it must not be retried
        time.sleep(0.05)
    return "done"
