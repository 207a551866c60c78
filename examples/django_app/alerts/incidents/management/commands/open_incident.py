"""``manage.py open_incident DESCRIPTION [--destinations N] [--report]``: what the project's API
does when an alert comes in, for the tests and the example."""

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from alerts.incidents.models import Destination, Incident
from alerts.incidents.tasks import count_notifications, open_incident


class Command(BaseCommand):
    help = "Open an incident; its notifications go out through background tasks."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("description")
        parser.add_argument("--destinations", type=int, default=3)
        parser.add_argument("--report", action="store_true",
                            help="also enqueue count_notifications on the queue 'reports'")

    def handle(self, *args: Any, **options: Any) -> None:
        with transaction.atomic():  # the task exists if and only if the incident does
            for number in range(options["destinations"]):
                Destination.objects.get_or_create(address=f"ops-{number}@example.org")
            incident = Incident.objects.create(description=options["description"])
            result = open_incident.enqueue(incident.pk)
        self.stdout.write(f"incident {incident.pk} task {result.id}")
        if options["report"]:
            report = count_notifications.using(queue_name="reports").enqueue()
            self.stdout.write(f"report task {report.id}")
