"""``kubetasks schedules``: the schedules in the database, from code and from TaskQueues."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click

from kubetasks import schedules as declared
from kubetasks.commands.database import open_store
from kubetasks.commands.options import Globals, KubetasksCommand, Refused, output_options
from kubetasks.commands.output import Table, ago, emit
from kubetasks.commands.tasks import import_module
from kubetasks.schedules import RegisteredSchedule


@click.command(cls=KubetasksCommand)
@output_options
@click.option("--queue", metavar="NAME", help="Only the schedules of this queue.")
@click.option("--import", "imports", multiple=True, metavar="MODULE",
              help="Register the schedules these modules declare first, as a worker does when it "
                   "starts; repeat for more.")
@click.option("--delete", metavar="NAME",
              help="Delete schedule NAME first: one removed from the code fires until then.")
def schedules(queue: str | None, imports: tuple[str, ...], delete: str | None) -> int:
    """Schedules: what each enqueues, when (cron and time zone, or interval), when it fires
    next, and its last tick's task."""
    for module in imports:
        import_module(module)
    with open_store() as store:
        if imports:
            store.register_schedules(list(declared.registry.values()), now=datetime.now(UTC))
        deleted = store.delete_schedule(delete) if delete is not None else None
        rows = store.list_schedules(queue)
    if deleted is False:
        raise Refused(f"--delete {delete!r} names no schedule; `kubetasks schedules` lists them")
    emit(click.get_current_context().ensure_object(Globals).output_format,
         {"schedules": [_summary(r) for r in rows]},
         table=Table(["NAME", "QUEUE", "TASK", "WHEN", "MISSED", "NEXT", "LAST", "LAST TASK",
                      "SOURCE"],
                     [_row(r) for r in rows]),
         text=None if rows else "no schedules found")
    return 0


def _row(registered: RegisteredSchedule) -> list[str]:
    s = registered.schedule
    last_task = ("-" if registered.last_task_id is None
                 else f"{registered.last_task_id} {registered.last_task_state}")
    return [s.name, s.queue_name, s.task_name, s.when, s.missed, ago(registered.next_tick),
            ago(registered.last_tick), last_task, s.source]


def _summary(registered: RegisteredSchedule) -> dict[str, Any]:
    s = registered.schedule
    return {"name": s.name, "queue": s.queue_name, "task": s.task_name, "cron": s.cron,
            "every_seconds": s.every.total_seconds() if s.every else None,
            "timezone": s.timezone, "args": list(s.args), "kwargs": dict(s.kwargs),
            "priority": s.priority, "max_attempts": s.max_attempts, "missed": s.missed,
            "source": s.source, "next_tick": registered.next_tick,
            "last_tick": registered.last_tick, "last_task_id": registered.last_task_id,
            "last_task_state": registered.last_task_state}
