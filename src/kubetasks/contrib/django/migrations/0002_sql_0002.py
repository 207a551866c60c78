"""kubetasks' SQL migration 0002 (src/kubetasks/sql/migrations/0002_*.sql)."""

from django.db import migrations

from kubetasks.contrib.django.schema import apply_sql_migrations


class Migration(migrations.Migration):  # type: ignore[misc]
    dependencies = (("kubetasks", "0001_initial"),)

    operations = (apply_sql_migrations(2),)
