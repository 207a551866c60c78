"""kubetasks' SQL migration 0006 (src/kubetasks/sql/migrations/0006_*.sql)."""

from django.db import migrations

from kubetasks.contrib.django.schema import apply_sql_migrations


class Migration(migrations.Migration):  # type: ignore[misc]
    dependencies = (("kubetasks", "0005_sql_0005"),)

    operations = (apply_sql_migrations(6),)
