"""``manage.py kubetasks_worker``: ``kubetasks worker`` for a Django project, in place of
django-tasks-db's ``db_worker``.

It takes every flag of ``kubetasks worker`` (so a TaskQueue's worker image can run it as its
entry point), and db_worker's useful ones with their meaning: ``--queue-name a,b`` (``*`` for
all), ``--exclude-queues``, ``--interval``, ``--batch``, ``--max-tasks``, ``--backend``.
Without ``--import``, it imports the ``tasks`` module of every installed app; the database is
the one the backend enqueues on (its ``OPTIONS.DATABASE`` in ``DATABASES``).
"""

from __future__ import annotations

import argparse
import logging
import os
from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.module_loading import module_has_submodule

from kubetasks.contrib.django.database import worker_conninfo
from kubetasks.contrib.django.running import close_connections_around_tasks
from kubetasks.exceptions import ConfigurationError
from kubetasks.identity import WorkerIdentity
from kubetasks.logs import register_secret, setup_logging
from kubetasks.worker.command import import_task_modules, serve
from kubetasks.worker.settings import WorkerSettings, worker_options

VERBOSITY_LEVELS = {0: "WARNING", 1: "INFO"}


def kubetasks_worker_options() -> list[Any]:
    """The click options of ``kubetasks worker``, read from the one place they are defined."""
    def command(**_: Any) -> None: ...

    return list(reversed(worker_options(command).__click_params__))  # type: ignore[attr-defined]


def add_worker_option(parser: CommandParser, option: Any) -> None:
    """One click option of ``kubetasks worker`` as the same argparse flag."""
    help_text = (option.help or "").replace("%", "%%")
    if option.multiple:
        parser.add_argument(*option.opts, dest=option.name, action="append", default=[],
                            metavar=option.metavar, help=help_text)
    elif option.is_flag and option.secondary_opts:  # --listen/--no-listen
        parser.add_argument(*option.opts, dest=option.name, default=None,
                            action=argparse.BooleanOptionalAction, help=help_text)
    elif option.is_flag:
        parser.add_argument(*option.opts, dest=option.name, default=None,
                            action="store_const", const=True, help=help_text)
    else:
        parser.add_argument(*option.opts, dest=option.name, default=None,
                            metavar=option.metavar, help=help_text)


def names(text: str | None) -> list[str]:
    return [name.strip() for name in (text or "").split(",") if name.strip()]


class Command(BaseCommand):  # type: ignore[misc]
    help = "Run this project's tasks (kubetasks worker, with db_worker's flags too)."

    def add_arguments(self, parser: CommandParser) -> None:
        self.worker_option_names = []
        for option in kubetasks_worker_options():
            add_worker_option(parser, option)
            self.worker_option_names.append(option.name)
        add = parser.add_argument
        add("--backend", default="default", help="the TASKS alias whose tasks to run")
        add("--queue-name", help="db_worker's form of --queue: names separated by commas, "
                                 "'*' for all (the default)")
        add("--exclude-queues", help="db_worker's form of --exclude-queue, comma-separated")
        add("--interval", help="db_worker's name of --poll-interval (0: poll without pause)")
        add("--batch", action="store_true",
            help="run the tasks that are due, then exit (with --max-tasks, at most that many)")
        add("--reload", action=argparse.BooleanOptionalAction, default=False,
            help="not supported: a reload would kill running tasks; restart the worker instead")
        add("--no-startup-delay", action="store_true",
            help="accepted for db_worker's command lines; kubetasks has no start-up delay")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["reload"]:
            raise CommandError("--reload is not supported: a reloading worker would kill the "
                               "tasks it runs; restart kubetasks_worker after a deploy instead")
        if not logging.getLogger().handlers:  # leave a project's own LOGGING alone
            setup_logging(VERBOSITY_LEVELS.get(options["verbosity"], "DEBUG"))
        try:
            settings = self.worker_settings(options)
        except ConfigurationError as error:
            raise CommandError(str(error)) from None
        close_connections_around_tasks()  # around kubetasks' own @task functions too
        serve(settings, identity=WorkerIdentity.from_env())

    def worker_settings(self, options: dict[str, Any]) -> WorkerSettings:
        url = worker_conninfo(options["backend"])
        register_secret(url)
        flags = {name: options[name] for name in self.worker_option_names}
        flags["imports"] = (*self.task_modules(), *flags["imports"])
        if options["queue_name"] and options["queue_name"].strip() != "*":
            flags["queues"] = [*flags["queues"], *names(options["queue_name"])]
        if options["exclude_queues"]:
            flags["exclude_queues"] = [*flags["exclude_queues"], *names(options["exclude_queues"])]
        if options["interval"] is not None and flags["poll_interval"] is None:
            flags["poll_interval"] = options["interval"]
        if options["batch"]:
            flags["exit_when_idle"] = True
        settings = WorkerSettings.from_options(flags, os.environ, database_url=url)
        import_task_modules(settings.imports)
        return settings

    def task_modules(self) -> list[str]:
        """The ``tasks`` module of every installed app, as Django projects keep their tasks."""
        return [f"{config.name}.tasks" for config in apps.get_app_configs()
                if module_has_submodule(config.module, "tasks")]
