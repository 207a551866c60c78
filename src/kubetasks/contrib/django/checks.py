"""``manage.py check`` for a KubeTasksBackend: a ``BACKEND`` swapped in without the options it
needs would enqueue outside Django's transactions, or wait 30 s for a database that is not
there; this says at start-up what to set instead."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from django.core import checks
from django.db import connections

HINT_DATABASE = ('set "OPTIONS": {"DATABASE": "default"} (a PostgreSQL alias of DATABASES) so '
                 "that a task is enqueued in Django's transaction, or \"DATABASE_URL\" for a "
                 "separate PostgreSQL")


def backend_messages(alias: str, options: Mapping[str, Any]) -> list[checks.CheckMessage]:
    """The problems of ``TASKS[alias]``'s OPTIONS, as Django check messages."""
    database = options.get("DATABASE")
    if database is not None:
        return _database_messages(alias, str(database))
    if options.get("DATABASE_URL"):
        return []
    if os.environ.get("KUBETASKS_DATABASE_URL"):
        return [checks.Warning(
            f"TASKS[{alias!r}] enqueues through KUBETASKS_DATABASE_URL, outside Django's "
            "transactions: a task of a rolled-back transaction still runs",
            hint=HINT_DATABASE, id="kubetasks.W001")]
    return [checks.Error(
        f"TASKS[{alias!r}] uses KubeTasksBackend but names no database: OPTIONS has neither "
        "DATABASE nor DATABASE_URL, and KUBETASKS_DATABASE_URL is not set",
        hint=HINT_DATABASE, id="kubetasks.E001")]


def _database_messages(alias: str, database: str) -> list[checks.CheckMessage]:
    if database not in connections:
        return [checks.Error(
            f"TASKS[{alias!r}] OPTIONS.DATABASE {database!r} is not in DATABASES "
            f"({', '.join(connections) or 'none'})",
            hint="name one of DATABASES' aliases", id="kubetasks.E002")]
    wrapper = connections[database]
    if wrapper.vendor != "postgresql":
        return [checks.Error(
            f"TASKS[{alias!r}] OPTIONS.DATABASE {database!r} is {wrapper.vendor}; kubetasks "
            "keeps its tasks in PostgreSQL",
            hint="name a DATABASES alias whose ENGINE is django.db.backends.postgresql",
            id="kubetasks.E003")]
    if not _is_psycopg3():
        return [checks.Error(
            f"TASKS[{alias!r}] OPTIONS.DATABASE {database!r} connects through psycopg2; "
            "kubetasks enqueues on Django's connection, which must be psycopg 3",
            hint="pip install 'psycopg[binary]' (Django prefers it over psycopg2 when both "
                 "are installed)", id="kubetasks.E004")]
    return []


def _is_psycopg3() -> bool:
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    return bool(is_psycopg3)
