"""kubetasks' task table seen by Django's ORM, for the admin. The model is unmanaged: kubetasks'
SQL migrations own the table (``migrations/`` applies them); it is read here, and changed only
through the store's functions (cancel, rerun), never by saving a row."""

from __future__ import annotations

from django.db import models


class TaskState(models.TextChoices):  # type: ignore[misc]
    READY = "READY"
    RUNNING = "RUNNING"
    SUCCESSFUL = "SUCCESSFUL"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class Task(models.Model):  # type: ignore[misc]
    id = models.BigAutoField(primary_key=True)
    queue_name = models.TextField()
    task_name = models.TextField()
    priority = models.SmallIntegerField()
    state = models.TextField(choices=TaskState.choices)
    args = models.JSONField()
    kwargs = models.JSONField()
    run_after = models.DateTimeField()
    expected_at = models.DateTimeField(null=True)
    enqueued_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True)
    last_attempted_at = models.DateTimeField(null=True)
    finished_at = models.DateTimeField(null=True)
    heartbeat_at = models.DateTimeField(null=True)
    attempts = models.IntegerField()
    max_attempts = models.IntegerField()
    lost_count = models.IntegerField()
    worker_pod = models.TextField(null=True)
    return_value = models.JSONField(null=True)
    errors = models.JSONField()

    class Meta:
        managed = False
        db_table = "kubetasks_tasks"
        ordering = ("-id",)

    def __str__(self) -> str:
        return f"{self.task_name} #{self.id} ({self.state})"
