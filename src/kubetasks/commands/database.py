"""The database a command works on: named by ``--database-url``, ``KUBETASKS_DATABASE_URL`` or
libpq's ``PG*`` variables, checked once, and never shown."""

from __future__ import annotations

import os

import click

from kubetasks.commands.options import Globals
from kubetasks.config import Settings
from kubetasks.exceptions import ConfigurationError
from kubetasks.logs import register_secret
from kubetasks.store import DatabaseError, Store


def database_url() -> str:
    """``--database-url``, else ``KUBETASKS_DATABASE_URL``; empty means libpq's ``PG*``. The URL
    (and ``PGPASSWORD``) are registered as secrets: no log line or error shows them."""
    given = click.get_current_context().ensure_object(Globals).database_url
    url = str(given or Settings.from_env().database_url)
    register_secret(url)
    register_secret(os.environ.get("PGPASSWORD"))
    return url


def reachable_database() -> str:
    """The database URL, once a connection to it succeeded: a database that cannot be reached
    is reported at once with libpq's reason (which names the host), not as a pool timeout."""
    url = database_url()
    try:
        with Store(url) as store:
            store.connect().close()
    except DatabaseError as error:
        given = click.get_current_context().ensure_object(Globals).database_url
        source = ("--database-url" if given else
                  "KUBETASKS_DATABASE_URL" if url else "libpq's PG* variables")
        raise ConfigurationError(f"cannot connect to the database of {source}: {error}") from None
    return url


def open_store() -> Store:
    return Store(reachable_database(), timeout=10)
