"""Tasks and signal receivers of the Django-semantics scenario (``semantics.py``).

Receivers write one line per signal to the file named by ``KUBETASKS_TEST_SIGNALS``, so that
the scenario sees what fired in the worker process too.
"""

import os

import django

from kubetasks import task as kubetasks_task

if django.VERSION >= (6, 0):
    from django.tasks import TaskContext, task
    from django.tasks.signals import task_enqueued, task_finished, task_started
else:
    from django_tasks import task
    from django_tasks.base import TaskContext
    from django_tasks.signals import task_enqueued, task_finished, task_started


def _record(signal_name: str):  # type: ignore[no-untyped-def]
    def receiver(sender, task_result, **kwargs):  # type: ignore[no-untyped-def]
        with open(os.environ["KUBETASKS_TEST_SIGNALS"], "a") as out:
            out.write(f"{os.getpid()} {signal_name} {task_result.id} {task_result.status} "
                      f"{sender.__name__}\n")
    return receiver


_receivers = [_record(name) for name in ("enqueued", "started", "finished")]
task_enqueued.connect(_receivers[0])
task_started.connect(_receivers[1])
task_finished.connect(_receivers[2])


@task()
def add(a: int, b: int) -> int:
    return a + b


@task()
def fails() -> None:
    raise ValueError("this task fails on purpose")


@task()
def returns_a_function():  # type: ignore[no-untyped-def]
    return lambda: True


@task(takes_context=True)
def context_seen(context, label: str) -> dict:  # type: ignore[no-untyped-def]
    return {"django_context": isinstance(context, TaskContext), "id": context.task_result.id,
            "attempt": context.attempt, "status": str(context.task_result.status),
            "label": label}


@kubetasks_task
def plain_double(n: int) -> int:
    """A plain kubetasks task in the same worker: Django sends no signal about it."""
    return 2 * n


@task()
async def fails_async() -> None:
    raise ValueError("this async task fails on purpose")
