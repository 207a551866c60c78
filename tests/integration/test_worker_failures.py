"""Failed attempts in a real worker: retries on the backoff, final failures, and rows the worker
cannot run at all — each ends as a clear error on its own task while the worker keeps going."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import psycopg
import pytest

from kubetasks import TaskResultStatus
from kubetasks.backends import PostgresBackend
from kubetasks.store import Store
from tests.integration import worker_tasks
from tests.integration.worker_process import WorkerProcess, wait_state

pytestmark = pytest.mark.timeout(90)
MODULE = "tests.integration.worker_tasks"


def raw_errors(dsn: str, task_id: str | int) -> list[dict[str, Any]]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT errors FROM kubetasks_tasks WHERE id = %s", [task_id]).fetchone()
        assert row is not None
        errors: list[dict[str, Any]] = row[0]
        return errors


def insert_raw(dsn: str, task_name: str, args: Any, kwargs: Any | None = None,
               age: str = "0 seconds") -> int:
    """A row written without the client's checks, as another program (or a bug) could."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "INSERT INTO kubetasks_tasks (queue_name, task_name, args, kwargs, enqueued_at) "
            "VALUES (%s, %s, %s, %s, now() - %s::interval) RETURNING id",
            [worker_tasks.QUEUE, task_name, json.dumps(args), json.dumps(kwargs or {}),
             age]).fetchone()
        assert row is not None
        return int(row[0])


def test_retries_follow_the_backoff_and_keep_every_error(
        backend: PostgresBackend, store: Store, dsn: str, tmp_path: Path) -> None:
    path = tmp_path / "attempts.txt"
    with WorkerProcess(dsn, tmp_path) as worker:
        result = worker_tasks.always_fails.enqueue(str(path))
        record = wait_state(store, result.id, timeout=15)
        assert worker.metric("kubetasks_worker_tasks_retried_total", queue=worker_tasks.QUEUE,
                             task_name=f"{MODULE}.always_fails") == 2

    assert record.state == TaskResultStatus.FAILED and record.attempts == 3
    starts = [float(line.split()[1]) for line in path.read_text().splitlines()]
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    # The pattern {1: 1, 2: 2}: one second after the first attempt, two after the second.
    assert 1.0 <= gaps[0] < 1.9 and 2.0 <= gaps[1] < 2.9, gaps
    assert [e.attempt for e in record.errors] == [1, 2, 3]
    for number, error in enumerate(record.errors, start=1):
        assert error.exception_class_path == f"{MODULE}.Boom"
        assert error.message == f"failure number {number}"
        assert "raise Boom" in error.traceback
        assert error.worker_id and error.worker_id.startswith("worker/")


def test_retry_and_fail_now_raised_by_tasks(backend: PostgresBackend, store: Store, dsn: str,
                                            tmp_path: Path) -> None:
    path = tmp_path / "attempts.txt"
    with WorkerProcess(dsn, tmp_path):
        retried = worker_tasks.asks_to_retry.enqueue(str(path))
        failed = worker_tasks.fails_now.enqueue()
        retried_record = wait_state(store, retried.id)
        failed_record = wait_state(store, failed.id)

    assert retried_record.state == TaskResultStatus.SUCCESSFUL
    assert retried_record.return_value == "second time lucky" and retried_record.attempts == 2
    assert retried_record.errors[0].exception_class_path == "kubetasks.exceptions.Retry"
    first, second = (float(line.split()[1]) for line in path.read_text().splitlines())
    assert second - first >= 0.5  # the delay the task asked for

    assert failed_record.state == TaskResultStatus.FAILED
    assert failed_record.attempts == 1  # of 5: FailNow does not retry
    assert failed_record.errors[0].exception_class_path == "kubetasks.exceptions.FailNow"


def test_bad_rows_fail_with_a_clear_error_and_the_worker_keeps_going(
        backend: PostgresBackend, store: Store, dsn: str, tmp_path: Path) -> None:
    # Enqueued an hour ago: no worker of a rollout in progress will know it any more.
    unknown = insert_raw(dsn, "app.tasks.not_imported_here", [], age="1 hour")
    too_many = insert_raw(dsn, f"{MODULE}.add", [1, 2, 3])
    not_a_list = insert_raw(dsn, f"{MODULE}.add", {"a": 1})
    unprintable = worker_tasks.raises_unprintable.enqueue()
    not_json = worker_tasks.returns_object.enqueue()
    nul = worker_tasks.returns_nul.enqueue()
    slow_sync = worker_tasks.sleeps_past_timeout.enqueue(2.0)
    slow_async = worker_tasks.sleeps_past_timeout_async.enqueue(2.0)
    self_cancelled = worker_tasks.cancels_itself.enqueue()

    with WorkerProcess(dsn, tmp_path, "--concurrency", "2") as worker:
        ids: dict[str, str | int] = {
            "unknown": unknown, "too_many": too_many, "not_a_list": not_a_list,
            "unprintable": unprintable.id, "not_json": not_json.id, "nul": nul.id,
            "slow_sync": slow_sync.id, "slow_async": slow_async.id,
            "self_cancelled": self_cancelled.id}
        records = {key: wait_state(store, task_id) for key, task_id in ids.items()}
        later = worker_tasks.add.enqueue(20, 22)
        assert wait_state(store, later.id).return_value == 42  # still working
        worker.wait_ready()

    assert all(r.state == TaskResultStatus.FAILED and len(r.errors) == 1
               for r in records.values()), records
    error = {key: r.errors[0] for key, r in records.items()}
    assert error["unknown"].exception_class_path == "kubetasks.exceptions.UnknownTaskError"
    assert "'app.tasks.not_imported_here' is not registered" in error["unknown"].message
    assert error["too_many"].exception_class_path == "kubetasks.exceptions.InvalidTaskError"
    assert f"do not fit {MODULE}.add(a, b): too many positional" in error["too_many"].message
    assert "args must be a JSON list" in error["not_a_list"].message
    assert error["unprintable"].exception_class_path == f"{MODULE}.Unprintable"
    assert "str() of Unprintable failed" in error["unprintable"].message
    assert "raise Unprintable()" in error["unprintable"].traceback
    assert error["not_json"].exception_class_path == "builtins.TypeError"
    assert "not JSON-serialisable" in error["not_json"].message
    assert "NUL character" in error["nul"].message
    for key in ("slow_sync", "slow_async"):
        assert error[key].exception_class_path == "kubetasks.exceptions.TaskTimeout"
        assert "longer than its timeout of 0.3 s" in error[key].message
    assert "thread could not be stopped" in error["slow_sync"].message
    assert error["self_cancelled"].exception_class_path == "asyncio.exceptions.CancelledError"
    assert raw_errors(dsn, unknown)[0]["at"]  # when it happened, kept with the error


def test_a_fresh_task_of_an_unknown_name_is_put_back_for_a_newer_worker(
        backend: PostgresBackend, store: Store, dsn: str, tmp_path: Path) -> None:
    fresh = insert_raw(dsn, "app.tasks.added_in_the_next_release", [])
    with WorkerProcess(dsn, tmp_path) as worker:
        worker.wait_ready()
        later = worker_tasks.add.enqueue(1, 2)
        assert wait_state(store, later.id).return_value == 3  # it claimed and moved on

        def put_back() -> bool:
            record = store.get(fresh)
            return record.state == TaskResultStatus.READY and bool(record.worker_ids)

        import time
        deadline = time.monotonic() + 15
        while not put_back() and time.monotonic() < deadline:
            time.sleep(0.05)

    record = store.get(fresh)
    assert record.state == TaskResultStatus.READY
    assert record.attempts == 0 and record.errors == []
    assert len(record.worker_ids) == 1  # claimed once, then left for a worker that knows it
    assert record.run_after > record.enqueued_at


def test_a_database_turned_read_only_is_waited_out(
        backend: PostgresBackend, store: Store, dsn: str, tmp_path: Path) -> None:
    """As while a primary fails over: writes are refused for a while, then accepted again."""
    import time

    def set_read_only(on: bool) -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            if on:
                conn.execute("ALTER SYSTEM SET default_transaction_read_only = on")
            else:
                conn.execute("ALTER SYSTEM RESET default_transaction_read_only")
            conn.execute("SELECT pg_reload_conf()")

    with WorkerProcess(dsn, tmp_path) as worker:
        worker.wait_ready()
        try:
            set_read_only(True)
            with psycopg.connect(dsn, autocommit=True) as app:
                app.execute("SET default_transaction_read_only = off")  # this session writes
                with app.transaction():
                    result = worker_tasks.add.using(connection=app).enqueue(2, 3)
            time.sleep(1.5)  # the worker is woken and its claims are refused meanwhile
            assert worker.process is not None and worker.process.poll() is None
            assert store.get(result.id).state == TaskResultStatus.READY
        finally:
            set_read_only(False)
        assert wait_state(store, result.id, timeout=20).return_value == 5
    assert any("database unreachable" in line.get("message", "") for line in worker.logs())
