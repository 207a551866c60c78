"""kubetasks' SQL migration 0005 (src/kubetasks/sql/migrations/0005_*.sql)."""

from django.db import migrations

from kubetasks.contrib.django.schema import apply_sql_migrations


class Migration(migrations.Migration):  # type: ignore[misc]
    dependencies = (("kubetasks", "0004_sql_0004"),)

    operations = (apply_sql_migrations(5),)
