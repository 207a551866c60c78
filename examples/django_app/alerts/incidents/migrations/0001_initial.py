import django.db.models.deletion
from django.db import migrations, models

AUTO_ID = ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False,
                                     verbose_name="ID"))


class Migration(migrations.Migration):
    initial = True

    dependencies = ()

    operations = (
        migrations.CreateModel(
            name="Destination",
            fields=[AUTO_ID, ("address", models.CharField(max_length=200, unique=True))],
        ),
        migrations.CreateModel(
            name="Incident",
            fields=[
                AUTO_ID,
                ("description", models.CharField(max_length=500)),
                ("opened_at", models.DateTimeField(auto_now_add=True)),
            ],
        ),
        migrations.CreateModel(
            name="Notification",
            fields=[
                AUTO_ID,
                ("sent_at", models.DateTimeField(auto_now_add=True)),
                ("destination", models.ForeignKey(
                    on_delete=django.db.models.deletion.CASCADE, to="incidents.destination")),
                ("incident", models.ForeignKey(
                    on_delete=django.db.models.deletion.CASCADE, to="incidents.incident")),
            ],
            options={"constraints": (models.UniqueConstraint(
                fields=("incident", "destination"), name="one_notification_per_destination"),)},
        ),
    )
