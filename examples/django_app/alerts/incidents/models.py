from django.db import models


class Destination(models.Model):
    """Where notifications go: an address, for the example."""

    address = models.CharField(max_length=200, unique=True)


class Incident(models.Model):
    description = models.CharField(max_length=500)
    opened_at = models.DateTimeField(auto_now_add=True)


class Notification(models.Model):
    incident = models.ForeignKey(Incident, on_delete=models.CASCADE)
    destination = models.ForeignKey(Destination, on_delete=models.CASCADE)
    sent_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = (models.UniqueConstraint(fields=("incident", "destination"),
                                                name="one_notification_per_destination"),)
