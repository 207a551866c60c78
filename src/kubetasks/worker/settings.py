"""The worker's configuration, read once from the command line and the environment.

A flag wins over its environment variable, which wins over the default. Every bad value is
refused with the flag or variable that held it and what would be accepted.

To add a worker flag, e.g. ``--max-tasks``:

1. add a field to ``WorkerSettings`` with its default and a docstring saying why it exists;
2. add ``click.option("--max-tasks", metavar="N", help="... (env KUBETASKS_WORKER_MAX_TASKS;
   default ...)")`` to ``WORKER_OPTIONS`` (it arrives as text, or ``None`` when not given);
3. read it in ``from_options`` with ``pick(args.max_tasks, "KUBETASKS_WORKER_MAX_TASKS",
   "--max-tasks", parse_..., cls.max_tasks)``: the parser is a plain function here that raises
   ``ValueError("use ...")``, so the flag and the variable are refused the same way;
4. test it in ``tests/unit/test_worker_settings.py`` and list it in ``docs/cli.md``.

``kubetasks worker`` (``kubetasks.commands.worker``) takes every option of ``WORKER_OPTIONS``;
nothing else needs to change.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from types import SimpleNamespace
from typing import Any, TypeVar, cast

import click

from kubetasks.exceptions import ConfigurationError
from kubetasks.parsing import parse_bool, parse_duration, parse_names, parse_port

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

LISTEN_POLL_INTERVAL = 5.0
"""With LISTEN, polling is only the safety net (retries scheduled by other workers, a lost
listening connection), so it can be slow."""

NO_LISTEN_POLL_INTERVAL = 1.0
"""Without LISTEN, polling is how new work is found: every second bounds the pickup delay."""

MAX_CONCURRENCY = 1000
"""Slots of one worker; each is a thread. For more, run more workers."""


@dataclass(frozen=True, kw_only=True)
class WorkerSettings:
    """Everything ``kubetasks worker`` was told, as plain values."""

    database_url: str
    imports: tuple[str, ...]
    queues: tuple[str, ...] = ()
    """Empty means every queue, as django-tasks-db's ``--queue-name '*'``: a task sent with
    ``using(queue_name=...)`` to a queue no decorator names still runs. (The operator always
    names its TaskQueue's queue.)"""
    exclude_queues: tuple[str, ...] = ()
    """Queues never served, even when every queue is."""
    max_tasks: int | None = None
    """Claim this many tasks, let them finish, and exit 0: a worker recycled by its supervisor
    (systemd, supervisord, a Job) after a fixed amount of work, as db_worker's ``--max-tasks``."""
    exit_when_idle: bool = False
    """Exit 0 once no task is due and none runs: a batch run (cron, a Job, a test)."""
    concurrency: int = 8
    listen: bool = True
    poll_interval: float = LISTEN_POLL_INTERVAL
    heartbeat_interval: float = 10.0
    grace_period: float = 25.0
    max_lost: int = 3
    unknown_task_grace: timedelta = timedelta(minutes=10)
    """How long after its enqueue a task naming no imported task is put back (every 15 s,
    uncounted) before it fails: during a rollout a newer worker may know it. 0 fails it at
    once, as Django's own workers do."""
    health_host: str = "0.0.0.0"
    health_port: int = 8000
    requeue_on_start: bool = True
    """Put back what an earlier process of this pod held. Only safe when the pod UID is really
    a pod's: outside Kubernetes every process on a host shares one stand-in UID, and a second
    worker started there would take the first one's running tasks away."""

    def serves(self, queue_name: str) -> bool:
        """Whether this worker runs the tasks of ``queue_name``."""
        if queue_name in self.exclude_queues:
            return False
        return not self.queues or queue_name in self.queues

    @property
    def serving(self) -> str:
        """The queues served, for the log."""
        served = f"queues {', '.join(self.queues)}" if self.queues else "all queues"
        excluded = f" but {', '.join(self.exclude_queues)}" if self.exclude_queues else ""
        return served + excluded

    @property
    def liveness_timeout(self) -> float:
        """How long the claim loop may go without turning before /healthz fails. The loop
        turns at least every poll interval, so allow a few of them, and never under a minute."""
        return max(60.0, 3 * self.poll_interval)

    @classmethod
    def from_options(cls, options: Mapping[str, Any], env: Mapping[str, str], *,
                     database_url: str) -> WorkerSettings:
        """The settings from the flags of ``WORKER_OPTIONS`` (as click hands them over, by
        their parameter names), else their environment variables, else the defaults."""
        args = SimpleNamespace(**options)

        def pick(flag: str | bool | None, variable: str, option: str,
                 parse: Callable[[str], T], default: T) -> T:
            return _pick(flag, env, variable, option, parse=parse, default=default)

        imports = tuple(args.imports) or parse_names(env.get("KUBETASKS_WORKER_IMPORTS", ""))
        if not imports:
            raise ConfigurationError(
                "no task modules to import: give --import MODULE (e.g. --import app.tasks) "
                "or KUBETASKS_WORKER_IMPORTS=app.tasks,app.more_tasks")
        listen = pick(args.listen, "KUBETASKS_WORKER_LISTEN", "--listen", parse_bool, cls.listen)
        queues = tuple(args.queues) or parse_names(env.get("KUBETASKS_WORKER_QUEUES", ""))
        excluded = (tuple(args.exclude_queues)
                    or parse_names(env.get("KUBETASKS_WORKER_EXCLUDE_QUEUES", "")))
        both = sorted(set(queues) & set(excluded))
        if both:
            raise ConfigurationError(
                f"queue {both[0]!r} is both served (--queue) and excluded (--exclude-queue): "
                "give one or the other")
        return cls(
            database_url=database_url,
            imports=imports,
            queues=queues,
            exclude_queues=excluded,
            max_tasks=pick(args.max_tasks, "KUBETASKS_WORKER_MAX_TASKS", "--max-tasks",
                           parse_max_tasks, cls.max_tasks),
            exit_when_idle=pick(args.exit_when_idle, "KUBETASKS_WORKER_EXIT_WHEN_IDLE",
                                "--exit-when-idle", parse_bool, cls.exit_when_idle),
            concurrency=pick(args.concurrency, "KUBETASKS_WORKER_CONCURRENCY", "--concurrency",
                             parse_concurrency, cls.concurrency),
            listen=listen,
            poll_interval=pick(args.poll_interval, "KUBETASKS_WORKER_POLL_INTERVAL",
                               "--poll-interval", parse_poll_interval,
                               LISTEN_POLL_INTERVAL if listen else NO_LISTEN_POLL_INTERVAL),
            heartbeat_interval=pick(args.heartbeat_interval, "KUBETASKS_WORKER_HEARTBEAT_INTERVAL",
                                    "--heartbeat-interval", parse_seconds, cls.heartbeat_interval),
            grace_period=pick(args.grace_period, "KUBETASKS_WORKER_GRACE_PERIOD",
                              "--grace-period", parse_grace, cls.grace_period),
            max_lost=pick(args.max_lost, "KUBETASKS_WORKER_MAX_LOST", "--max-lost",
                          parse_max_lost, cls.max_lost),
            unknown_task_grace=pick(args.unknown_task_grace,
                                    "KUBETASKS_WORKER_UNKNOWN_TASK_GRACE", "--unknown-task-grace",
                                    parse_unknown_task_grace, cls.unknown_task_grace),
            health_host=args.health_host or env.get("KUBETASKS_HEALTH_HOST") or cls.health_host,
            health_port=pick(args.health_port, "KUBETASKS_HEALTH_PORT", "--health-port",
                             parse_port, cls.health_port),
            requeue_on_start=bool(env.get("POD_UID")),
        )


WORKER_OPTIONS: tuple[Callable[[Callable[..., Any]], Callable[..., Any]], ...] = (
    click.option("--import", "imports", multiple=True, metavar="MODULE",
                 help="Module defining tasks; repeat for more (env KUBETASKS_WORKER_IMPORTS, "
                      "comma-separated). Only tasks registered there run."),
    click.option("--queue", "queues", multiple=True, metavar="NAME",
                 help="Queue to serve; repeat for more (env KUBETASKS_WORKER_QUEUES; "
                      "default: every queue)."),
    click.option("--exclude-queue", "exclude_queues", multiple=True, metavar="NAME",
                 help="Queue not to serve, even when serving every queue; repeat for more "
                      "(env KUBETASKS_WORKER_EXCLUDE_QUEUES)."),
    click.option("--max-tasks", metavar="N",
                 help="Claim N tasks, let them finish, exit 0 (env KUBETASKS_WORKER_MAX_TASKS; "
                      "default: no limit)."),
    click.option("--exit-when-idle", is_flag=True, default=None,
                 help="Exit 0 once no task is due and none runs "
                      "(env KUBETASKS_WORKER_EXIT_WHEN_IDLE=true)."),
    click.option("--concurrency", metavar="N",
                 help="Tasks run at once, 1 to 1000 (env KUBETASKS_WORKER_CONCURRENCY; default 8)."),
    click.option("--listen/--no-listen", default=None,
                 help="Wake on NOTIFY; --no-listen behind PgBouncer transaction pooling "
                      "(env KUBETASKS_WORKER_LISTEN=true|false; default true)."),
    click.option("--poll-interval", metavar="DURATION",
                 help="Longest sleep between claims when idle, 0 to poll without pause "
                      "(env KUBETASKS_WORKER_POLL_INTERVAL; "
                      f"default {LISTEN_POLL_INTERVAL:g} with LISTEN, {NO_LISTEN_POLL_INTERVAL:g} "
                      "without)."),
    click.option("--heartbeat-interval", metavar="DURATION",
                 help="How often running tasks' heartbeats are refreshed "
                      "(env KUBETASKS_WORKER_HEARTBEAT_INTERVAL; default 10)."),
    click.option("--grace-period", metavar="DURATION",
                 help="On SIGTERM, how long running tasks may finish before they are put back "
                      "(env KUBETASKS_WORKER_GRACE_PERIOD; default 25, under Kubernetes' 30)."),
    click.option("--max-lost", metavar="N",
                 help="A task lost more often than this ends FAILED when put back at start "
                      "(env KUBETASKS_WORKER_MAX_LOST; default 3)."),
    click.option("--unknown-task-grace", metavar="DURATION",
                 help="How long after its enqueue a task naming no imported task is put back "
                      "for a newer worker before it fails, e.g. 10m; 0 fails it at once "
                      "(env KUBETASKS_WORKER_UNKNOWN_TASK_GRACE; default 10m)."),
    click.option("--health-host", metavar="HOST",
                 help="Address of /healthz, /readyz, /metrics "
                      "(env KUBETASKS_HEALTH_HOST; default 0.0.0.0)."),
    click.option("--health-port", metavar="PORT",
                 help="Port of /healthz, /readyz, /metrics; 0 picks a free one "
                      "(env KUBETASKS_HEALTH_PORT; default 8000)."),
)
"""The flags of ``kubetasks worker``, in ``--help`` order. Each is read as text (``None`` when
not given) so that ``from_options`` parses a flag and its environment variable the same way and
names whichever held a bad value."""


def worker_options(command: F) -> F:
    """Decorate a click command with every flag of ``WORKER_OPTIONS``."""
    for option in reversed(WORKER_OPTIONS):
        command = cast(F, option(command))
    return command


def _pick(flag: str | bool | None, env: Mapping[str, str], variable: str, option: str, *,
          parse: Callable[[str], T], default: T) -> T:
    if flag is not None:
        source, text = option, str(flag)
    elif env.get(variable):
        source, text = variable, env[variable]
    else:
        return default
    try:
        return parse(text)
    except ValueError as error:
        raise ConfigurationError(f"{source}={text!r} is invalid: {error}") from None


def parse_max_lost(text: str) -> int:
    """0 is valid: a task fails the first time it is lost."""
    if not text.strip().isdigit():
        raise ValueError("use a whole number >= 0")
    return int(text)


def parse_concurrency(text: str) -> int:
    value = int(text) if text.strip().isdigit() and len(text) < 10 else -1
    if not 1 <= value <= MAX_CONCURRENCY:
        raise ValueError(f"use a whole number from 1 to {MAX_CONCURRENCY} (for more, run more "
                         "workers)")
    return value


def parse_max_tasks(text: str) -> int:
    value = int(text) if text.strip().isdigit() and len(text) < 10 else 0
    if value < 1:
        raise ValueError("use a whole number >= 1")
    return value


def parse_poll_interval(text: str) -> float:
    """0 is valid: poll again as soon as a claim comes back empty (a busy loop on the
    database, for tests and for polling without LISTEN where every millisecond counts)."""
    return duration_seconds(text, zero=True, example="0.5 or 2s")


def parse_seconds(text: str) -> float:
    return duration_seconds(text, zero=False, example="0.5 or 10s")


def duration_seconds(text: str, *, zero: bool, example: str) -> float:
    """Seconds, written as ``parse_duration`` reads any duration: ``0.5``, ``90s``, ``1m30s``."""
    try:
        value = parse_duration(text).total_seconds()
    except ValueError:
        value = -1.0
    if value < 0 or (value == 0 and not zero):
        raise ValueError(f"use a number of seconds {'>=' if zero else '>'} 0 or a duration, "
                         f"e.g. {example}")
    return value


def parse_unknown_task_grace(text: str) -> timedelta:
    value = parse_duration(text)
    if value < timedelta(0):
        raise ValueError("use a duration >= 0, e.g. 10m, or 0 to fail such a task at once")
    return value


def parse_grace(text: str) -> float:
    return duration_seconds(text, zero=True, example="25 or 1m")
