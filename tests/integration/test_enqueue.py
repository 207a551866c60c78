"""Enqueue and read back against a real PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from kubetasks import InvalidTaskError, TaskResultDoesNotExist, TaskResultStatus, get_result
from kubetasks.backends import PostgresBackend
from kubetasks.store import Store
from tests.integration.tasks_for_tests import reindex, send_welcome, whoami


def count_tasks(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM kubetasks_tasks").fetchone()
        assert row is not None
        return int(row[0])


def test_enqueue_returns_ready_result_readable_by_id(backend: PostgresBackend) -> None:
    result = send_welcome.enqueue(42, template="short")

    assert result.status == TaskResultStatus.READY
    assert result.args == [42] and result.kwargs == {"template": "short"}
    assert result.queue_name == "emails" and result.max_attempts == 3
    again = get_result(result.id)
    assert again.task_name == "tests.integration.tasks_for_tests.send_welcome"
    assert again.status == TaskResultStatus.READY
    with pytest.raises(ValueError, match="has not finished"):
        _ = again.return_value


def test_using_sets_priority_run_after_and_deadline(backend: PostgresBackend) -> None:
    before = datetime.now(UTC)
    result = send_welcome.using(priority=10, run_after=timedelta(minutes=5),
                                expected_at=timedelta(hours=1)).enqueue(43)

    stored = get_result(result.id)
    assert stored.priority == 10
    assert stored.run_after is not None and stored.expected_at is not None
    assert before + timedelta(minutes=5) <= stored.run_after <= datetime.now(UTC) + timedelta(minutes=5)
    assert stored.expected_at - stored.run_after == pytest.approx(timedelta(minutes=55),
                                                                  abs=timedelta(seconds=5))


def test_aenqueue(backend: PostgresBackend) -> None:
    result = asyncio.run(send_welcome.aenqueue(44))
    assert get_result(result.id).args == [44]


def test_enqueue_many_writes_all_in_order(backend: PostgresBackend, dsn: str) -> None:
    results = send_welcome.enqueue_many([(1,), (2,), {"user_id": 3, "template": "t"}])

    assert [r.args for r in results] == [[1], [2], []]
    assert results[2].kwargs == {"user_id": 3, "template": "t"}
    assert [int(r.id) for r in results] == sorted(int(r.id) for r in results)
    assert count_tasks(dsn) == 3


def test_enqueue_many_writes_nothing_when_one_call_is_bad(backend: PostgresBackend, dsn: str) -> None:
    with pytest.raises(InvalidTaskError, match=r"args\[0\]"):
        send_welcome.enqueue_many([(1,), (object(),)])
    assert count_tasks(dsn) == 0


def test_batched_enqueue_splits_records_into_tasks_of_n(backend: PostgresBackend) -> None:
    results = reindex.enqueue_batched(list(range(8)), "nightly")

    assert [r.args for r in results] == [[[0, 1, 2], "nightly"], [[3, 4, 5], "nightly"],
                                         [[6, 7], "nightly"]]
    assert [len(r.args[0]) for r in reindex.enqueue_batched([1, 2, 3, 4], batch_size=2)] == [2, 2]


def test_context_is_stored_with_the_task(backend: PostgresBackend) -> None:
    result = whoami.using(context={"user": 7, "tenant": "acme", "trace_id": "abc"}).enqueue("hi")
    assert get_result(result.id).context == {"user": 7, "tenant": "acme", "trace_id": "abc"}


def test_transactional_enqueue_exists_only_if_committed(backend: PostgresBackend, dsn: str) -> None:
    with psycopg.connect(dsn) as app_conn:
        with app_conn.transaction():
            kept = send_welcome.using(connection=app_conn).enqueue(1)
        with pytest.raises(RuntimeError), app_conn.transaction():
            send_welcome.using(connection=app_conn).enqueue(2)
            assert count_tasks(dsn) == 1  # not visible to others before commit
            raise RuntimeError("the application's transaction fails")

    assert count_tasks(dsn) == 1
    assert get_result(kept.id).args == [1]


def test_get_result_of_unknown_id(backend: PostgresBackend) -> None:
    with pytest.raises(TaskResultDoesNotExist, match="999999"):
        get_result("999999")
    with pytest.raises(TaskResultDoesNotExist, match="'abc'"):
        get_result("abc")


def test_restricted_queues_refuse_unknown_queue(store: Store, dsn: str) -> None:
    restricted = PostgresBackend(store, allowed_queues=["emails"])
    with pytest.raises(InvalidTaskError, match="'reports' is not one of the allowed queues"):
        reindex.using(backend=restricted).enqueue([1])
    assert send_welcome.using(backend=restricted).enqueue(1).status == TaskResultStatus.READY
    assert count_tasks(dsn) == 1


@pytest.mark.parametrize(("change", "message"), [
    ({"priority": 101}, "priority 101 is invalid"),
    ({"run_after": datetime(2030, 1, 1)}, "run_after 2030-01-01T00:00:00 is a naive datetime"),
    ({"run_after": timedelta(hours=2), "expected_at": timedelta(hours=1)},
     "expected_at .* is before run_after"),
    ({"queue_name": ""}, "queue_name '' is invalid"),
])
def test_bad_options_raise_and_write_nothing(backend: PostgresBackend, dsn: str,
                                             change: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidTaskError, match=message):
        send_welcome.using(**change).enqueue(1)
    assert count_tasks(dsn) == 0


def test_database_rejects_a_deadline_before_run_after(dsn: str) -> None:
    with psycopg.connect(dsn) as conn, pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("INSERT INTO kubetasks_tasks (queue_name, task_name, run_after, expected_at)"
                     " VALUES ('q', 't', now(), now() - interval '1 hour')")
