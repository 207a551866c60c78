"""Tasks the worker benchmark runs: as little work as possible, so the worker is what is measured."""

from __future__ import annotations

import time

from kubetasks import task

QUEUE = "bench"


@task(queue_name=QUEUE)
def noop() -> None:
    return None


@task(queue_name=QUEUE)
async def noop_async() -> None:
    return None


@task(queue_name=QUEUE)
def started_at() -> float:
    """When the function began, by the wall clock shared with the enqueuing process."""
    return time.time()
