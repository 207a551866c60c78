"""kubetasks' SQL migration 0003 (src/kubetasks/sql/migrations/0003_*.sql)."""

from django.db import migrations

from kubetasks.contrib.django.schema import apply_sql_migrations


class Migration(migrations.Migration):  # type: ignore[misc]
    dependencies = (("kubetasks", "0002_sql_0002"),)

    operations = (apply_sql_migrations(3),)
