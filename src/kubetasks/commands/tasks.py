"""Commands about single tasks and the backlog: ``enqueue``, ``status``, ``tasks``, ``show``,
``cancel``, ``retry``."""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from typing import Any

import click

from kubetasks.backends import PostgresBackend
from kubetasks.commands.database import open_store
from kubetasks.commands.options import (
    DRY_RUN,
    Count,
    KubetasksCommand,
    TaskId,
    output_format,
    output_options,
)
from kubetasks.commands.output import Table, ago, emit
from kubetasks.exceptions import ConfigurationError, TaskResultDoesNotExist
from kubetasks.records import QueueStats, TaskRecord
from kubetasks.result import TaskResultStatus
from kubetasks.store import Store

STATES = [state.value for state in TaskResultStatus]


@click.command(cls=KubetasksCommand)
@output_options
@click.argument("task")
@click.option("--import", "imports", multiple=True, metavar="MODULE",
              help="Module that registers the task; repeat for more.")
@click.option("--args", "args_json", default="[]", metavar="JSON",
              help="JSON list of positional arguments.")
@click.option("--kwargs", "kwargs_json", default="{}", metavar="JSON",
              help="JSON object of keyword arguments.")
def enqueue(task: str, imports: tuple[str, ...], args_json: str, kwargs_json: str) -> int:
    """Enqueue a task registered by the --import modules; prints its id.

    TASK is the task's name, such as app.tasks.send_welcome.
    """
    for module in imports:
        import_module(module)
    from kubetasks.task import resolve_task

    registered = resolve_task(task)
    try:
        call_args, call_kwargs = json.loads(args_json), json.loads(kwargs_json)
    except json.JSONDecodeError as error:
        click.echo(f"kubetasks: --args/--kwargs must be JSON: {error}", err=True)
        return 2
    if not isinstance(call_args, list) or not isinstance(call_kwargs, dict):
        click.echo("kubetasks: --args must be a JSON list and --kwargs a JSON object", err=True)
        return 2
    with open_store() as store:
        result = registered.using(backend=PostgresBackend(store)).enqueue(*call_args, **call_kwargs)
    emit(output_format(), {"id": int(result.id), "queue": result.queue_name, "task": task},
         text=result.id)
    return 0


def import_module(module: str) -> None:
    try:
        importlib.import_module(module)
    except Exception as error:  # a missing module, or one that fails while it is imported
        raise ConfigurationError(
            f"--import {module!r} failed: {type(error).__name__}: {error}; give an importable "
            "module path such as app.tasks (is the application on PYTHONPATH?)") from None


@click.command(cls=KubetasksCommand)
@output_options
@click.option("--queue", "queues", multiple=True, metavar="NAME",
              help="Only this queue; repeat for more.")
def status(queues: tuple[str, ...]) -> int:
    """Backlog per queue: ready, scheduled, running, overdue, next deadline."""
    with open_store() as store:
        stats = store.queue_stats(list(queues) or None)
    emit(output_format(), {"queues": [_queue_data(s) for s in stats]},
         table=Table(["QUEUE", "READY", "SCHEDULED", "RUNNING", "OVERDUE", "NEXT DEADLINE"],
                     [[s.queue_name, str(s.ready), str(s.scheduled), str(s.running), str(s.overdue),
                       _deadline(s)] for s in stats]),
         text=None if stats else "no queue has READY or RUNNING tasks")
    return 0


def _queue_data(stats: QueueStats) -> dict[str, Any]:
    return {"queue": stats.queue_name, "ready": stats.ready, "scheduled": stats.scheduled,
            "running": stats.running, "overdue": stats.overdue, "next_deadline": stats.next_deadline}


def _deadline(stats: QueueStats) -> str:
    return ago(stats.next_deadline) if stats.next_deadline else "-"


@click.command(cls=KubetasksCommand)
@output_options
@click.option("--queue", metavar="NAME", help="Only this queue.")
@click.option("--state", type=click.Choice(STATES, case_sensitive=False),
              help="Only tasks in this state (any case).")
@click.option("--limit", type=Count(1, 10_000), default=50, show_default=True, metavar="N",
              help="At most this many, newest first.")
def tasks(queue: str | None, state: str | None, limit: int) -> int:
    """Recent tasks, newest first."""
    with open_store() as store:
        records = store.list_tasks(queue_name=queue, state=state, limit=limit)
    emit(output_format(), {"tasks": [_summary(r) for r in records]},
         table=Table(["ID", "STATE", "QUEUE", "TASK", "ATTEMPTS", "LOST", "ENQUEUED", "FINISHED"],
                     [[str(r.id), r.state.value, r.queue_name, r.task_name,
                       f"{r.attempts}/{r.max_attempts}", str(r.lost_count), ago(r.enqueued_at),
                       ago(r.finished_at)] for r in records], colour_column=1),
         text=None if records else "no tasks found")
    return 0


def _summary(record: TaskRecord) -> dict[str, Any]:
    return {"id": record.id, "state": record.state.value, "queue": record.queue_name,
            "task": record.task_name, "priority": record.priority, "attempts": record.attempts,
            "max_attempts": record.max_attempts, "lost": record.lost_count,
            "enqueued_at": record.enqueued_at, "finished_at": record.finished_at}


@click.command(cls=KubetasksCommand)
@output_options
@click.argument("task_id", type=TaskId(), metavar="ID")
def show(task_id: int) -> int:
    """One task in full: state, times, worker, errors with their tracebacks, return value."""
    with open_store() as store:
        record = existing_task(store, task_id)
    data = _details(record)
    emit(output_format(), data, text=_describe(data))
    return 0


def existing_task(store: Store, task_id: int) -> TaskRecord:
    try:
        return store.get(task_id)
    except TaskResultDoesNotExist:
        raise TaskResultDoesNotExist(f"task {task_id} does not exist (it may have been pruned); "
                                     "`kubetasks tasks` lists the tasks") from None


def _details(r: TaskRecord) -> dict[str, Any]:
    return {**_summary(r), "args": r.args, "kwargs": r.kwargs, "context": r.context,
            "run_after": r.run_after, "expected_at": r.expected_at, "started_at": r.started_at,
            "last_attempted_at": r.last_attempted_at, "heartbeat_at": r.heartbeat_at,
            "cancelled_at": r.cancelled_at, "cancelled_by": r.cancelled_by,
            "worker": r.worker_pod, "worker_ids": r.worker_ids, "return_value": r.return_value,
            "errors": [{"attempt": e.attempt, "worker_id": e.worker_id, "message": e.message,
                        "exception": e.exception_class_path, "traceback": e.traceback}
                       for e in r.errors]}


TIMES = ("enqueued_at", "run_after", "expected_at", "started_at", "last_attempted_at",
         "heartbeat_at", "cancelled_at", "finished_at")


def _describe(data: dict[str, Any]) -> str:
    """As ``kubectl describe`` reads: one field a line, times as "3m ago (ISO)"."""
    lines = [f"ID:           {data['id']}", f"Task:         {data['task']}",
             f"Queue:        {data['queue']}", f"State:        {data['state']}",
             f"Priority:     {data['priority']}",
             f"Attempts:     {data['attempts']}/{data['max_attempts']} (lost {data['lost']})",
             f"Worker:       {data['worker'] or '-'}",
             f"Arguments:    {json.dumps(data['args'])} {json.dumps(data['kwargs'])}"]
    for name in TIMES:
        moment = data[name]
        label = name.removesuffix("_at").replace("_", " ").capitalize() + ":"
        when = f"{ago(moment)} ({moment.isoformat(timespec='seconds')})" if moment else "-"
        if name == "cancelled_at" and data["cancelled_by"]:
            when += f" by {data['cancelled_by']}"
        lines.append(f"{label:<14}{when}")
    lines.append(f"Return value: {json.dumps(data['return_value'])}")
    lines.append(f"Errors:       {len(data['errors']) or '-'}")
    for error in data["errors"]:
        lines.append(f"  attempt {error['attempt']} on {error['worker_id'] or '-'}: "
                     f"{error['exception']}: {error['message']}")
        lines.extend(f"    {line}" for line in error["traceback"].rstrip().splitlines())
    return "\n".join(lines)


@click.command(cls=KubetasksCommand)
@output_options
@click.argument("task_id", type=TaskId(), metavar="ID")
@DRY_RUN
@click.option("--by", metavar="WHO", help="Who cancels, recorded with the task (default: user@host).")
def cancel(task_id: int, dry_run: bool, by: str | None) -> int:
    """Cancel a task: a READY one at once; a RUNNING one is stopped by its worker within a
    heartbeat. Exit 1 if it does not exist or has finished."""
    return _change_one(task_id, dry_run=dry_run, verb="cancel", done="cancelled",
                       applies=_cancellable, refusal=_not_cancellable,
                       change=lambda store, task_id: store.cancel(task_id, by=by))


def _cancellable(record: TaskRecord) -> bool:
    return record.state.value == "READY" or (record.state.value == "RUNNING"
                                             and record.cancelled_at is None)


def _not_cancellable(record: TaskRecord) -> str:
    if record.state.value == "RUNNING" and record.cancelled_at is not None:
        return (f"cancel of task {record.id} was already requested {ago(record.cancelled_at)} "
                f"by {record.cancelled_by or '-'}; it is RUNNING until its worker stops it")
    return f"task {record.id} is {record.state.value}, not READY or RUNNING: nothing to cancel"


@click.command(cls=KubetasksCommand)
@output_options
@click.argument("task_id", type=TaskId(), metavar="ID")
@DRY_RUN
def retry(task_id: int, dry_run: bool) -> int:
    """Run a FAILED or CANCELLED task again: back to READY with one more attempt, its errors
    kept as history. Exit 1 if it does not exist or is in another state."""
    return _change_one(task_id, dry_run=dry_run, verb="retry", done="retried",
                       applies=lambda r: r.state.value in ("FAILED", "CANCELLED"),
                       refusal=lambda r: f"task {r.id} is {r.state.value}, not FAILED or "
                                         "CANCELLED: nothing to retry",
                       change=Store.rerun)


def _change_one(task_id: int, *, dry_run: bool, verb: str, done: str,
                applies: Callable[[TaskRecord], bool], refusal: Callable[[TaskRecord], str],
                change: Callable[[Store, int], bool]) -> int:
    """One task changed by the store (which decides), or why not: missing, or in a state the
    change does not apply to. A dry run judges by ``applies`` and changes nothing."""
    with open_store() as store:
        before = existing_task(store, task_id)
        changed = applies(before) if dry_run else change(store, task_id)
        after = before if dry_run else existing_task(store, task_id)
    state = after.state.value
    if not changed:
        text = refusal(after)
    elif dry_run:
        text = f"would {verb} task {task_id}"
    elif state == before.state.value:  # recorded, for its worker to carry out
        text = f"{verb} of task {task_id} requested; it is {state} until its worker stops it"
    else:
        text = f"{done} task {task_id}"
    emit(output_format(), {done: int(changed), "id": task_id, "state": state, "dry_run": dry_run},
         text=text)
    return 0 if changed else 1
