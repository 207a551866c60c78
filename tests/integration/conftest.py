"""A real PostgreSQL for the whole session; a fresh, migrated database for every test.

The server runs from the installed binaries (as the ``postgres`` user when we are root);
pytest-postgresql's noproc fixture points at it, loads the migrations into a template, and
clones a new database from that template for each test.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest
from localcluster.postgres import LocalPostgres
from pytest_postgresql import factories

from kubetasks import configure
from kubetasks.backends import PostgresBackend
from kubetasks.migrations import migrate
from kubetasks.store import Store


@pytest.fixture(scope="session")
def pg_server() -> Iterator[SimpleNamespace]:
    with LocalPostgres() as server:
        yield SimpleNamespace(
            host="127.0.0.1", port=server.port, user=server.user, password=None, options="",
            maintenance_dbname="postgres", template_dbname=None,
        )


def _load_schema(*, host: str, port: int, user: str, dbname: str, **_: object) -> None:
    with psycopg.connect(host=host, port=port, user=user, dbname=dbname) as conn:
        migrate(connection=conn)


postgresql_noproc = factories.postgresql_noproc(
    dbname="kubetasks", depends_on="pg_server", load=[_load_schema])
postgresql = factories.postgresql("postgresql_noproc")


@pytest.fixture
def dsn(postgresql: psycopg.Connection[Any]) -> str:
    info = postgresql.info
    return f"postgresql://{info.user}@{info.host}:{info.port}/{info.dbname}"


@pytest.fixture
def store(dsn: str) -> Iterator[Store]:
    store = Store(dsn, max_size=8)
    yield store
    store.close()


@pytest.fixture
def backend(store: Store) -> Iterator[PostgresBackend]:
    """The postgres backend as the process default, for the test's duration."""
    backend = PostgresBackend(store)
    configure(backend)
    yield backend
    configure("dummy")
