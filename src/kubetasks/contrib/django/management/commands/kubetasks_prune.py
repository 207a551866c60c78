"""``manage.py kubetasks_prune``: delete finished tasks past their retention, with the flags of
django-tasks-db's ``prune_db_task_results`` (so a cron line changes only its command name)."""

from __future__ import annotations

from argparse import ArgumentTypeError
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from kubetasks.contrib.django.database import backend_params, worker_conninfo
from kubetasks.exceptions import ConfigurationError
from kubetasks.logs import register_secret
from kubetasks.store import Store

MAX_DAYS = 36500


def age_in_days(text: str) -> int:
    """Whole days from 0 (every finished task) to 36500; a negative age would reach into the
    future and delete a task that finished a moment ago."""
    try:
        days = int(text)
    except ValueError:
        days = -1
    if not 0 <= days <= MAX_DAYS:
        raise ArgumentTypeError(f"{text!r} is not an age in days: use a whole number from 0 to "
                                f"{MAX_DAYS}")
    return days


class Command(BaseCommand):  # type: ignore[misc]
    help = "Delete finished tasks (successful, failed, cancelled) older than an age in days."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--backend", default="default",
                            help="the TASKS alias to prune (default: 'default')")
        parser.add_argument("--queue-name", default="*",
                            help="queues to prune, comma-separated; '*' for all (default)")
        parser.add_argument("--min-age-days", type=age_in_days, default=14,
                            help="age in days past which finished tasks go (default 14)")
        parser.add_argument("--failed-min-age-days", type=age_in_days, default=None,
                            help="the same for failed and cancelled tasks (default: "
                                 "--min-age-days)")
        parser.add_argument("--dry-run", action="store_true",
                            help="count what would be deleted, delete nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        successful = timedelta(days=options["min_age_days"])
        failed_days = options["failed_min_age_days"]
        failed = successful if failed_days is None else timedelta(days=failed_days)
        queues = self._queues(options["queue_name"])
        try:
            backend_params(options["backend"])
            url = worker_conninfo(options["backend"])
        except ConfigurationError as error:
            raise CommandError(str(error)) from None
        register_secret(url)
        with Store(url, timeout=10) as store:
            if options["dry_run"]:
                count = sum(store.count_prunable(successful=successful, failed=failed,
                                                 queue_name=q) for q in queues)
                self.stdout.write(f"would delete {count} finished tasks (dry run)")
                return
            count = sum(store.prune(successful=successful, failed=failed, queue_name=q)
                        for q in queues)
        self.stdout.write(f"deleted {count} finished tasks")

    def _queues(self, text: str) -> list[str | None]:
        if text.strip() == "*":
            return [None]
        names = [name.strip() for name in text.split(",") if name.strip()]
        if not names:
            raise CommandError(f"--queue-name {text!r} names no queue: give names separated "
                               "by commas, or '*' for all")
        return list(dict.fromkeys(names))
