"""kubetasks' SQL migration 0001 (the task table) and the admin's unmanaged model of it."""

from django.db import migrations, models

from kubetasks.contrib.django.schema import apply_sql_migrations


class Migration(migrations.Migration):  # type: ignore[misc]
    initial = True

    dependencies: tuple[tuple[str, str], ...] = ()

    operations = (
        apply_sql_migrations(1),
        migrations.CreateModel(
            name="Task",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("queue_name", models.TextField()),
                ("task_name", models.TextField()),
                ("priority", models.SmallIntegerField()),
                ("state", models.TextField(choices=[
                    ("READY", "Ready"), ("RUNNING", "Running"), ("SUCCESSFUL", "Successful"),
                    ("FAILED", "Failed"), ("CANCELLED", "Cancelled")])),
                ("args", models.JSONField()),
                ("kwargs", models.JSONField()),
                ("run_after", models.DateTimeField()),
                ("expected_at", models.DateTimeField(null=True)),
                ("enqueued_at", models.DateTimeField()),
                ("started_at", models.DateTimeField(null=True)),
                ("last_attempted_at", models.DateTimeField(null=True)),
                ("finished_at", models.DateTimeField(null=True)),
                ("heartbeat_at", models.DateTimeField(null=True)),
                ("attempts", models.IntegerField()),
                ("max_attempts", models.IntegerField()),
                ("lost_count", models.IntegerField()),
                ("worker_pod", models.TextField(null=True)),
                ("return_value", models.JSONField(null=True)),
                ("errors", models.JSONField()),
            ],
            options={"db_table": "kubetasks_tasks", "ordering": ("-id",), "managed": False},
        ),
    )
