"""kubetasks' SQL migration 0004 (src/kubetasks/sql/migrations/0004_*.sql)."""

from django.db import migrations

from kubetasks.contrib.django.schema import apply_sql_migrations


class Migration(migrations.Migration):  # type: ignore[misc]
    dependencies = (("kubetasks", "0003_sql_0003"),)

    operations = (apply_sql_migrations(4),)
