"""kubetasks' tasks for ``bench.compare``."""

from bench.compare_apps.signal import started
from kubetasks import task


@task(name="noop")
def noop() -> None:
    """Nothing: what is measured is the queue."""


@task(name="pickup")
def pickup() -> None:
    started()
