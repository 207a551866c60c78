"""Where kubetasks' tables are, in a Django project: the ``OPTIONS.DATABASE`` alias of the
``KubeTasksBackend`` in ``TASKS``, so that a worker started with ``manage.py`` needs no URL of
its own."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any

from django.conf import settings
from django.db import connections

from kubetasks.exceptions import ConfigurationError

BACKEND_PATH = "kubetasks.contrib.django.KubeTasksBackend"

_NOT_LIBPQ = frozenset({"cursor_factory", "context", "prepare_threshold", "autocommit"})
"""What Django's ``get_connection_params()`` passes to psycopg that is no libpq keyword."""


def kubetasks_backends() -> Iterator[tuple[str, Mapping[str, Any]]]:
    """``(alias, its TASKS entry)`` of every KubeTasksBackend, read from the settings: this
    needs no backend instance, so it works before any task is defined."""
    for alias, params in getattr(settings, "TASKS", {}).items():
        if params.get("BACKEND") == BACKEND_PATH:
            yield alias, params


def backend_params(alias: str) -> Mapping[str, Any]:
    """The ``TASKS[alias]`` entry, which must be a KubeTasksBackend."""
    backends = dict(kubetasks_backends())
    if alias not in backends:
        raise ConfigurationError(
            f"TASKS has no {alias!r} backend using {BACKEND_PATH}; "
            f"those that do: {', '.join(sorted(backends)) or 'none'}")
    return backends[alias]


def schema_aliases() -> set[str]:
    """The Django databases that hold kubetasks' tables: every backend's ``OPTIONS.DATABASE``,
    or ``default`` when none names one."""
    named = {params.get("OPTIONS", {}).get("DATABASE") for _, params in kubetasks_backends()}
    named.discard(None)
    return {str(alias) for alias in named} or {"default"}


def conninfo(database_alias: str) -> str:
    """A libpq connection string for a Django database alias: the same host, port, user,
    password, database and OPTIONS (sslmode, ...) Django connects with."""
    if database_alias not in connections:
        raise ConfigurationError(
            f"OPTIONS.DATABASE {database_alias!r} is not in DATABASES "
            f"({', '.join(connections) or 'empty'})")
    wrapper = connections[database_alias]
    if wrapper.vendor != "postgresql":
        raise ConfigurationError(
            f"DATABASES[{database_alias!r}] is {wrapper.vendor}: kubetasks needs PostgreSQL")
    params = wrapper.get_connection_params()
    return " ".join(f"{key}={quote(value)}" for key, value in sorted(params.items())
                    if key not in _NOT_LIBPQ and isinstance(value, str | int | float)
                    and value != "")


def quote(value: object) -> str:
    """A value as libpq's ``key=value`` syntax wants it: single-quoted, ``\\`` and ``'``
    escaped with a backslash."""
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


def raw_connection(database_alias: str) -> Any:
    """Django's own psycopg connection of an alias, opened if need be: kubetasks' statements
    on it are part of Django's transaction."""
    wrapper = connections[database_alias]
    wrapper.ensure_connection()
    return wrapper.connection


def worker_conninfo(alias: str) -> str:
    """Where ``TASKS[alias]``'s tasks are, for a worker or a prune: its ``OPTIONS.DATABASE``'s
    connection, else its ``OPTIONS.DATABASE_URL``, else ``KUBETASKS_DATABASE_URL`` (libpq's
    ``PG*`` variables fill in what is left out)."""
    options = backend_params(alias).get("OPTIONS", {})
    if options.get("DATABASE"):
        return conninfo(str(options["DATABASE"]))
    return str(options.get("DATABASE_URL") or os.environ.get("KUBETASKS_DATABASE_URL", ""))
