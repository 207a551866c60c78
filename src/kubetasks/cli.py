"""The ``kubetasks`` command: migrate, worker, enqueue, status, tasks, cancel, requeue, prune."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Sequence
from datetime import timedelta

from kubetasks.backends import PostgresBackend
from kubetasks.config import Settings
from kubetasks.exceptions import KubeTasksError
from kubetasks.migrations import migrate
from kubetasks.parsing import parse_duration
from kubetasks.store import Store


def database_url(args: argparse.Namespace) -> str:
    """``--database-url``, else ``KUBETASKS_DATABASE_URL``; empty means libpq's ``PG*``."""
    return str(args.database_url or Settings.from_env().database_url)


def duration_argument(text: str) -> timedelta:
    try:
        return parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def cmd_migrate(args: argparse.Namespace) -> int:
    applied = migrate(database_url(args))
    print(f"applied migrations {applied}" if applied else "schema is up to date")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    with Store(database_url(args)) as store:
        stats = store.queue_stats(args.queue or None)
    print(f"{'QUEUE':<20} {'READY':>7} {'SCHEDULED':>9} {'RUNNING':>7} {'OVERDUE':>7}  NEXT DEADLINE")
    for s in stats:
        deadline = s.next_deadline.isoformat(timespec="seconds") if s.next_deadline else "-"
        print(f"{s.queue_name:<20} {s.ready:>7} {s.scheduled:>9} {s.running:>7} {s.overdue:>7}  {deadline}")
    return 0


def cmd_tasks(args: argparse.Namespace) -> int:
    with Store(database_url(args)) as store:
        records = store.list_tasks(queue_name=args.queue, state=args.state, limit=args.limit)
    for r in records:
        print(f"{r.id:>8} {r.state:<10} {r.queue_name:<12} {r.task_name} "
              f"attempts={r.attempts}/{r.max_attempts} lost={r.lost_count}")
    return 0


def cmd_enqueue(args: argparse.Namespace) -> int:
    for module in args.imports:
        importlib.import_module(module)
    from kubetasks.task import resolve_task

    task = resolve_task(args.task)
    try:
        call_args = json.loads(args.args)
        call_kwargs = json.loads(args.kwargs)
    except json.JSONDecodeError as error:
        print(f"kubetasks: --args/--kwargs must be JSON: {error}", file=sys.stderr)
        return 2
    if not isinstance(call_args, list) or not isinstance(call_kwargs, dict):
        print("kubetasks: --args must be a JSON list and --kwargs a JSON object", file=sys.stderr)
        return 2
    with Store(database_url(args)) as store:
        result = task.using(backend=PostgresBackend(store)).enqueue(*call_args, **call_kwargs)
    print(result.id)
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    with Store(database_url(args)) as store:
        cancelled = store.cancel(args.task_id)
    print("cancelled" if cancelled else f"task {args.task_id} is not READY; nothing cancelled")
    return 0 if cancelled else 1


def cmd_requeue(args: argparse.Namespace) -> int:
    with Store(database_url(args)) as store:
        if args.pod_uid:
            moved = store.requeue_pod(args.pod_uid, reason=f"requeued by hand (pod {args.pod_uid})",
                                      max_lost=args.max_lost)
        else:
            moved = store.requeue_stale(args.stale, reason="requeued by hand (stale heartbeat)",
                                        max_lost=args.max_lost, queue_name=args.queue)
    for task in moved:
        print(f"{task.task_id} {task.queue_name} {task.task_name} -> {task.state}")
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    with Store(database_url(args)) as store:
        deleted = store.prune(successful=args.successful, failed=args.failed, queue_name=args.queue)
    print(f"deleted {deleted} finished tasks")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from kubetasks.worker.command import run

    return run(args, database_url=database_url(args))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kubetasks", description=__doc__)
    parser.add_argument("--database-url", default=None,
                        help="PostgreSQL URL (default: KUBETASKS_DATABASE_URL, then libpq's PG*)")
    parser.add_argument("--log-level", default=os.environ.get("KUBETASKS_LOG_LEVEL", "INFO"))
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("migrate", help="create or upgrade the schema").set_defaults(func=cmd_migrate)

    from kubetasks.worker.command import add_arguments

    worker = sub.add_parser("worker", help="claim and run tasks")
    add_arguments(worker)
    worker.set_defaults(func=cmd_worker)

    enqueue = sub.add_parser("enqueue", help="enqueue a task registered by --import modules")
    enqueue.add_argument("task", help="task name, e.g. app.tasks.send_welcome")
    enqueue.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE")
    enqueue.add_argument("--args", default="[]", help="JSON list of positional arguments")
    enqueue.add_argument("--kwargs", default="{}", help="JSON object of keyword arguments")
    enqueue.set_defaults(func=cmd_enqueue)

    status = sub.add_parser("status", help="backlog per queue")
    status.add_argument("--queue", action="append", default=[])
    status.set_defaults(func=cmd_status)

    tasks = sub.add_parser("tasks", help="list recent tasks")
    tasks.add_argument("--queue")
    tasks.add_argument("--state", choices=["READY", "RUNNING", "SUCCESSFUL", "FAILED", "CANCELLED"])
    tasks.add_argument("--limit", type=int, default=50)
    tasks.set_defaults(func=cmd_tasks)

    cancel = sub.add_parser("cancel", help="cancel a task that has not started")
    cancel.add_argument("task_id")
    cancel.set_defaults(func=cmd_cancel)

    requeue = sub.add_parser("requeue", help="put back RUNNING tasks of a dead pod or stale heartbeat")
    requeue.add_argument("--pod-uid")
    requeue.add_argument("--stale", type=duration_argument, default=timedelta(minutes=5))
    requeue.add_argument("--queue")
    requeue.add_argument("--max-lost", type=int, default=3)
    requeue.set_defaults(func=cmd_requeue)

    prune = sub.add_parser("prune", help="delete finished tasks past their retention")
    prune.add_argument("--successful", type=duration_argument, default=timedelta(days=7))
    prune.add_argument("--failed", type=duration_argument, default=timedelta(days=30))
    prune.add_argument("--queue")
    prune.set_defaults(func=cmd_prune)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from kubetasks.logs import setup_logging

    setup_logging(args.log_level)
    try:
        code: int = args.func(args)
    except KubeTasksError as error:
        print(f"kubetasks: {error}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
