"""django-tasks-db's tasks for ``bench.compare``."""

from django_tasks import task

from bench.compare_apps.signal import started


@task()
def noop() -> None:
    """Nothing: what is measured is the queue."""


@task()
def pickup() -> None:
    started()
