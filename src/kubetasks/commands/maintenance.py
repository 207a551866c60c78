"""Commands that change many tasks at once: ``migrate``, ``requeue``, ``prune``."""

from __future__ import annotations

from datetime import timedelta

import click

from kubetasks.commands.database import open_store, reachable_database
from kubetasks.commands.options import (
    DRY_RUN,
    Count,
    Duration,
    KubetasksCommand,
    output_format,
    output_options,
)
from kubetasks.commands.output import Table, emit, progress
from kubetasks.migrations import migrate as apply_schema
from kubetasks.parsing import format_duration
from kubetasks.records import LostTask
from kubetasks.store import Store

MIN_STALE = timedelta(minutes=1)
"""``requeue --stale`` below this would put back the tasks of live workers, which heartbeat
every 10 s by default."""

BATCH = 500
"""Rows changed per statement by ``requeue`` and ``prune``: each batch is a short transaction,
so a large backlog never holds locks for long, and the progress bar moves."""


@click.command(cls=KubetasksCommand)
@output_options
def migrate() -> int:
    """Create or upgrade the schema."""
    applied = apply_schema(reachable_database())
    text = f"applied migrations {applied}" if applied else "schema is up to date"
    emit(output_format(), {"applied": list(applied)}, text=text)
    return 0


@click.command(cls=KubetasksCommand)
@output_options
@click.option("--pod-uid", metavar="UID", help="Put back what this pod held (all of it).")
@click.option("--stale", type=Duration(MIN_STALE, why=" (a shorter one would put back the tasks "
                                        "of live workers)"), default="5m", show_default=True,
              help="Heartbeat age after which a RUNNING task counts as lost (at least 1m).")
@click.option("--queue", metavar="NAME", help="Only this queue.")
@click.option("--max-lost", type=Count(0, 100), default=3, show_default=True, metavar="N",
              help="A task lost more often than this ends FAILED instead of READY.")
@DRY_RUN
def requeue(pod_uid: str | None, stale: timedelta, queue: str | None, max_lost: int,
            dry_run: bool) -> int:
    """Put back RUNNING tasks of a dead pod, or with a stale heartbeat."""
    with open_store() as store:
        lost = store.running_to_requeue(pod_uid=pod_uid, stale=None if pod_uid else stale,
                                        queue_name=queue)
        states = {t.task_id: "FAILED" if t.lost_count + 1 > max_lost else "READY" for t in lost}
        if not dry_run:
            states = _requeue_in_batches(store, lost, pod_uid=pod_uid, max_lost=max_lost)
    moved = [t for t in lost if t.task_id in states]
    rows = [{"id": t.task_id, "queue": t.queue_name, "task": t.task_name, "worker": t.worker_pod,
             "state": states[t.task_id]} for t in moved]
    verb = "would requeue" if dry_run else "requeued"
    emit(output_format(), {"requeued": len(rows), "dry_run": dry_run, "tasks": rows},
         table=Table(["ID", "QUEUE", "TASK", "WORKER", "STATE"],
                     [[str(t.task_id), t.queue_name, t.task_name, t.worker_pod or "-",
                       states[t.task_id]]
                      for t in moved], colour_column=4),
         text=f"{verb} {len(rows)} tasks")
    return 0


def _requeue_in_batches(store: Store, lost: list[LostTask], *, pod_uid: str | None,
                        max_lost: int) -> dict[int, str]:
    """Put the tasks back, ``BATCH`` claims per statement; a task that finished meanwhile is
    left alone (the statement is fenced on its claim). Their new states, by id."""
    reason = (f"requeued by hand (pod {pod_uid})" if pod_uid
              else "requeued by hand (stale heartbeat)")
    states: dict[int, str] = {}
    with progress(len(lost), "requeueing") as bar:
        for start in range(0, len(lost), BATCH):
            batch = [t.claim_id for t in lost[start:start + BATCH]]
            for task in store.requeue_claims(batch, reason=reason, max_lost=max_lost):
                states[task.task_id] = str(task.state)
            bar.update(len(batch))
    return states


@click.command(cls=KubetasksCommand)
@output_options
@click.option("--successful", type=Duration(timedelta(0)), default="7d", show_default=True,
              help="Age after which SUCCESSFUL tasks are deleted.")
@click.option("--failed", type=Duration(timedelta(0)), default="30d", show_default=True,
              help="Age after which FAILED and CANCELLED tasks are deleted.")
@click.option("--queue", metavar="NAME", help="Only this queue.")
@DRY_RUN
def prune(successful: timedelta, failed: timedelta, queue: str | None, dry_run: bool) -> int:
    """Delete finished tasks past their retention."""
    with open_store() as store:
        count = store.count_prunable(successful=successful, failed=failed, queue_name=queue)
        if not dry_run:
            count = _prune_in_batches(store, count, successful=successful, failed=failed,
                                      queue=queue)
    data = {"deleted": count, "dry_run": dry_run, "successful_older_than": format_duration(successful),
            "failed_older_than": format_duration(failed)}
    verb = "would delete" if dry_run else "deleted"
    emit(output_format(), data, text=f"{verb} {count} finished tasks")
    return 0


def _prune_in_batches(store: Store, expected: int, *, successful: timedelta, failed: timedelta,
                      queue: str | None) -> int:
    deleted = 0
    with progress(expected, "pruning") as bar:
        while True:
            step = store.prune(successful=successful, failed=failed, queue_name=queue,
                               batch=BATCH, max_batches=1)
            deleted += step
            bar.update(step)
            if step < BATCH:
                return deleted
