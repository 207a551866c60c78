"""The project's background work: opening an incident notifies every destination, one task
each, and a daily report counts what was sent."""

import django

if django.VERSION >= (6, 0):
    from django.tasks import task
else:
    from django_tasks import task

from alerts.incidents.models import Destination, Incident, Notification


@task()
def open_incident(incident_id: int) -> int:
    """Fan out: one notification task per destination, enqueued from inside this task."""
    incident = Incident.objects.get(pk=incident_id)
    destinations = list(Destination.objects.values_list("pk", flat=True))
    for destination_id in destinations:
        send_notification.enqueue(incident.pk, destination_id)
    return len(destinations)


@task(queue_name="notifications")
def send_notification(incident_id: int, destination_id: int) -> str:
    # get_or_create: delivery is at least once, a repeat must not send twice.
    notification, _ = Notification.objects.get_or_create(
        incident_id=incident_id, destination_id=destination_id)
    return notification.destination.address


@task()
def count_notifications() -> int:
    """Sent with ``using(queue_name="reports")``: no decorator names that queue."""
    return Notification.objects.count()
