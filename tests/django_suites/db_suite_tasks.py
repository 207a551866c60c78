"""The tasks django-tasks-db's suite imports as ``tests.tasks`` (its sdist does not ship
them): the same names and behaviour as Django's own ``tests/tasks/tasks.py``. Copied into the
extracted suite at test time by ``tests/integration/test_django_suites.py``."""

import sys
import time

from django_tasks import task
from django_tasks.base import TaskContext


@task()
def noop_task(*args, **kwargs):  # type: ignore[no-untyped-def]
    return None


@task()
async def noop_task_async(*args, **kwargs):  # type: ignore[no-untyped-def]
    return None


@task()
def calculate_meaning_of_life() -> int:
    return 42


@task()
def failing_task_value_error() -> None:
    raise ValueError("This task failed due to ValueError")


@task()
def failing_task_system_exit() -> None:
    raise SystemExit("This task failed due to SystemExit")


@task()
def failing_task_keyboard_interrupt() -> None:
    raise KeyboardInterrupt("This task failed due to KeyboardInterrupt")


@task()
def complex_exception() -> None:
    raise ValueError(ValueError("This task failed"))


@task()
def complex_return_value():  # type: ignore[no-untyped-def]
    return lambda: True  # neither JSON nor picklable


@task()
def exit_task() -> None:
    sys.exit(1)


@task()
def hang() -> None:
    time.sleep(300)


@task()
def sleep_for(seconds: float) -> None:
    time.sleep(seconds)


@task(takes_context=True)
def get_task_id(context: TaskContext) -> str:
    return context.task_result.id


@task(takes_context=True)
def test_context(context: TaskContext, attempt: int) -> None:
    assert isinstance(context, TaskContext)
    assert context.attempt == attempt
