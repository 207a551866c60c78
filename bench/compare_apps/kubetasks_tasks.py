"""kubetasks' tasks for ``bench.compare``."""

from bench.compare_apps.signal import started
from kubetasks import task


@task(name="noop")
def noop() -> None:
    """Nothing: what is measured is the queue."""


@task(name="pickup")
def pickup() -> None:
    started()


@task(name="noop_async")
async def noop_async() -> None:
    """Nothing, as an ``async def`` (as PgQueuer's and Procrastinate's no-ops are): it runs on
    the worker's event loop, where a plain function runs on one of its threads."""
