"""The client's pool, as app pods use it: from many threads and from async code at once, and
across a PostgreSQL restart (every pooled connection broken under it)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest

from kubetasks import TaskResultStatus, configure, task
from kubetasks import store as store_module
from kubetasks.backends import PostgresBackend
from kubetasks.store import Store

pytestmark = pytest.mark.timeout(60)


@task(name="pool.noop")
def noop(number: int) -> int:
    return number


def enqueue_from_threads(count: int) -> list[Any]:
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda n: noop.enqueue(n).status, range(count)))


async def enqueue_from_async(count: int) -> list[Any]:
    results = await asyncio.gather(*(noop.aenqueue(n) for n in range(count)))
    return [r.status for r in results]


@pytest.mark.parametrize("caller", ["threads", "async"])
def test_concurrent_first_enqueues_all_succeed(dsn: str, caller: str) -> None:
    for _ in range(3):  # a fresh, unopened pool each round: the race is at its opening
        backend = configure(PostgresBackend(Store(dsn, max_size=4)))
        try:
            statuses = (enqueue_from_threads(8) if caller == "threads"
                        else asyncio.run(enqueue_from_async(8)))
        finally:
            configure("dummy")
            backend.close()
        assert statuses == [TaskResultStatus.READY] * 8


def terminate_other_sessions(dsn: str) -> int:
    """As a PostgreSQL restart does to every connection of the pool."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize("caller", ["threads", "async"])
def test_enqueues_after_the_connections_broke_all_succeed(dsn: str, caller: str) -> None:
    backend = configure(PostgresBackend(Store(dsn, min_size=4, max_size=4)))
    try:
        assert enqueue_from_threads(8) == [TaskResultStatus.READY] * 8  # the pool is full
        assert terminate_other_sessions(dsn) >= 4
        statuses = (enqueue_from_threads(8) if caller == "threads"
                    else asyncio.run(enqueue_from_async(8)))
    finally:
        configure("dummy")
        backend.close()
    assert statuses == [TaskResultStatus.READY] * 8


def test_an_enqueue_sent_on_a_session_the_server_just_ended_is_sent_again(
        dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The race the lend's check cannot close: the server ends the session after the check
    looked. The statement did nothing, so it goes again on a fresh connection, once per dead
    connection, and the caller sees one task, enqueued once."""
    monkeypatch.setattr(store_module, "_server_wrote", lambda conn: False)  # the check saw nothing
    store = Store(dsn, min_size=2, max_size=2)
    backend = configure(PostgresBackend(store))
    try:
        enqueue_from_threads(2)  # both pooled connections have served
        assert terminate_other_sessions(dsn) >= 2
        result = noop.enqueue(7)
    finally:
        configure("dummy")
        backend.close()
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM kubetasks_tasks WHERE args = '[7]'").fetchone()
    assert result.status == TaskResultStatus.READY and row == (1,)
