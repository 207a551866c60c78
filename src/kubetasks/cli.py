"""The ``kubetasks`` command: migrate, worker, enqueue, status, tasks, cancel, requeue, prune."""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import logging
import math
import os
import sys
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import NoReturn

from kubetasks.backends import PostgresBackend
from kubetasks.config import Settings
from kubetasks.exceptions import ConfigurationError, KubeTasksError
from kubetasks.logs import redact, register_secret
from kubetasks.migrations import migrate
from kubetasks.parsing import parse_duration
from kubetasks.store import DatabaseError, Store

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = "5"
"""Seconds a command waits for the database to answer (libpq's ``PGCONNECT_TIMEOUT``, unless
set): an unreachable host fails in seconds with its reason, not after the pool's timeout."""

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
MIN_STALE = timedelta(minutes=1)
"""``requeue --stale`` below this would put back the tasks of live workers, which heartbeat
every 10 s by default."""
MAX_DURATION = timedelta(days=36500)
UNDEFINED_TABLE = "42P01"


def database_url(args: argparse.Namespace) -> str:
    """``--database-url``, else ``KUBETASKS_DATABASE_URL``; empty means libpq's ``PG*``. The URL
    (and ``PGPASSWORD``) are registered as secrets: no log line or error shows them."""
    url = str(args.database_url or Settings.from_env().database_url)
    register_secret(url)
    register_secret(os.environ.get("PGPASSWORD"))
    return url


def reachable_database(args: argparse.Namespace) -> str:
    """The database URL, once a connection to it succeeded: a database that cannot be reached
    is reported at once with libpq's reason (which names the host), not as a pool timeout."""
    url = database_url(args)
    try:
        with Store(url) as store:
            store.connect().close()
    except DatabaseError as error:
        source = ("--database-url" if args.database_url else
                  "KUBETASKS_DATABASE_URL" if url else "libpq's PG* variables")
        raise ConfigurationError(f"cannot connect to the database of {source}: {error}") from None
    return url


def open_store(args: argparse.Namespace) -> Store:
    return Store(reachable_database(args), timeout=10)


def _bounded_duration(option: str, low: timedelta, high: timedelta = MAX_DURATION,
                      why: str = "") -> Callable[[str], timedelta]:
    def parse(text: str) -> timedelta:
        try:
            value = parse_duration(text)
        except (ValueError, OverflowError) as error:
            message = str(error) if isinstance(error, ValueError) else f"duration {text!r} is too long"
            raise argparse.ArgumentTypeError(message) from None
        if not math.isfinite(value.total_seconds()) or not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"{option} {text!r} is out of range: use from {_seconds(low)} to {_seconds(high)}{why}")
        return value
    return parse


def _seconds(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _count(option: str, low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"{option} {text!r} is invalid: use a whole number from {low} to {high}")
        return value
    return parse


def log_level(text: str) -> str:
    if text.lower() not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(
            f"log level {text!r} is invalid: use one of {', '.join(LOG_LEVELS)}")
    return text.upper()


duration_argument = _bounded_duration("duration", timedelta(0))


def cmd_migrate(args: argparse.Namespace) -> int:
    applied = migrate(reachable_database(args))
    print(f"applied migrations {applied}" if applied else "schema is up to date")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    with open_store(args) as store:
        stats = store.queue_stats(args.queue or None)
    print(f"{'QUEUE':<20} {'READY':>7} {'SCHEDULED':>9} {'RUNNING':>7} {'OVERDUE':>7}  NEXT DEADLINE")
    for s in stats:
        deadline = s.next_deadline.isoformat(timespec="seconds") if s.next_deadline else "-"
        print(f"{s.queue_name:<20} {s.ready:>7} {s.scheduled:>9} {s.running:>7} {s.overdue:>7}  {deadline}")
    return 0


def cmd_tasks(args: argparse.Namespace) -> int:
    with open_store(args) as store:
        records = store.list_tasks(queue_name=args.queue, state=args.state, limit=args.limit)
    for r in records:
        print(f"{r.id:>8} {r.state:<10} {r.queue_name:<12} {r.task_name} "
              f"attempts={r.attempts}/{r.max_attempts} lost={r.lost_count}")
    return 0


def cmd_enqueue(args: argparse.Namespace) -> int:
    for module in args.imports:
        import_module(module)
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
    with open_store(args) as store:
        result = task.using(backend=PostgresBackend(store)).enqueue(*call_args, **call_kwargs)
    print(result.id)
    return 0


def import_module(module: str) -> None:
    try:
        importlib.import_module(module)
    except Exception as error:  # a missing module, or one that fails while it is imported
        raise ConfigurationError(
            f"--import {module!r} failed: {type(error).__name__}: {error}; give an importable "
            "module path such as app.tasks (is the application on PYTHONPATH?)") from None


def cmd_cancel(args: argparse.Namespace) -> int:
    with open_store(args) as store:
        cancelled = store.cancel(args.task_id)
    print("cancelled" if cancelled else f"task {args.task_id} is not READY; nothing cancelled")
    return 0 if cancelled else 1


def cmd_requeue(args: argparse.Namespace) -> int:
    with open_store(args) as store:
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
    with open_store(args) as store:
        deleted = store.prune(successful=args.successful, failed=args.failed, queue_name=args.queue)
    print(f"deleted {deleted} finished tasks")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from kubetasks.worker.command import run

    return run(args, database_url=database_url(args))


class Parser(argparse.ArgumentParser):
    """Refuses a bad argument in one line naming it (argparse would print its usage first)."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: {redact(message)} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def installed_version() -> str:
    """The installed distribution's version, as ``pip show kubetasks`` says it."""
    try:
        return importlib.metadata.version("kubetasks")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed as a distribution)"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="kubetasks", description=__doc__)
    parser.add_argument("--version", action="version", version=f"kubetasks {installed_version()}")
    parser.add_argument("--database-url", default=None,
                        help="PostgreSQL URL (default: KUBETASKS_DATABASE_URL, then libpq's PG*)")
    parser.add_argument("--log-level", type=log_level, metavar="LEVEL",
                        default=os.environ.get("KUBETASKS_LOG_LEVEL", "INFO"),
                        help=f"one of {', '.join(LOG_LEVELS)} (default: KUBETASKS_LOG_LEVEL or info)")
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
    tasks.add_argument("--limit", type=_count("--limit", 1, 10_000), default=50)
    tasks.set_defaults(func=cmd_tasks)

    cancel = sub.add_parser("cancel", help="cancel a task that has not started")
    cancel.add_argument("task_id")
    cancel.set_defaults(func=cmd_cancel)

    requeue = sub.add_parser("requeue", help="put back RUNNING tasks of a dead pod or stale heartbeat")
    requeue.add_argument("--pod-uid")
    requeue.add_argument("--stale", default=timedelta(minutes=5), type=_bounded_duration(
        "--stale", MIN_STALE, why=" (a shorter one would put back the tasks of live workers)"),
        help="heartbeat age after which a task counts as lost (default 5m, at least 1m)")
    requeue.add_argument("--queue")
    requeue.add_argument("--max-lost", type=_count("--max-lost", 0, 100), default=3)
    requeue.set_defaults(func=cmd_requeue)

    prune = sub.add_parser("prune", help="delete finished tasks past their retention")
    prune.add_argument("--successful", type=_bounded_duration("--successful", timedelta(0)),
                       default=timedelta(days=7))
    prune.add_argument("--failed", type=_bounded_duration("--failed", timedelta(0)),
                       default=timedelta(days=30))
    prune.add_argument("--queue")
    prune.set_defaults(func=cmd_prune)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Every error is one line on stderr naming the value, and exit code 1
    (2 for a bad argument); no secret is ever shown."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    for argument in argv:
        if "\0" in argument:
            parser.error(f"argument {argument!r} contains a NUL character")
    args = parser.parse_args(argv)
    from kubetasks.logs import setup_logging

    setup_logging(args.log_level)
    os.environ.setdefault("PGCONNECT_TIMEOUT", CONNECT_TIMEOUT)
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        print("kubetasks: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # one line, never a traceback
        log.debug("command failed", exc_info=True)
        print(f"kubetasks: {one_line(describe(error))}", file=sys.stderr)
        return 1
    return code


def describe(error: Exception) -> str:
    if isinstance(error, KubeTasksError):
        return str(error)
    if isinstance(error, DatabaseError):
        if getattr(error, "sqlstate", None) == UNDEFINED_TABLE:
            return f"the database has no kubetasks schema ({error}): run `kubetasks migrate`"
        return f"database error ({type(error).__name__}): {error}"
    return f"{type(error).__name__}: {error}"


def one_line(text: str) -> str:
    return redact("; ".join(line.strip() for line in text.strip().splitlines() if line.strip()))


if __name__ == "__main__":
    sys.exit(main())
