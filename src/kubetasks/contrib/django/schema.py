"""kubetasks' schema through ``manage.py migrate``: each Django migration of this app applies
the SQL migrations up to its own number, through the same function as ``kubetasks migrate``
(so either command finds the other's work done, recorded in ``kubetasks_migrations``)."""

from __future__ import annotations

from typing import Any

from django.db import migrations

from kubetasks.contrib.django.database import schema_aliases
from kubetasks.exceptions import ConfigurationError
from kubetasks.migrations import migrate


def apply_sql_migrations(upto: int) -> Any:
    """A migration operation applying kubetasks' SQL migrations numbered up to ``upto`` on the
    database the backend uses (``OPTIONS.DATABASE``; others are left alone). Irreversible:
    unapplying would drop the tasks."""

    def forward(apps: Any, schema_editor: Any) -> None:
        connection = schema_editor.connection
        if connection.alias not in schema_aliases():
            return
        if connection.vendor != "postgresql":
            raise ConfigurationError(
                f"DATABASES[{connection.alias!r}] is {connection.vendor}: kubetasks' tables "
                "need PostgreSQL")
        connection.ensure_connection()
        migrate(connection=connection.connection, upto=upto)

    return migrations.RunPython(forward, elidable=False)
