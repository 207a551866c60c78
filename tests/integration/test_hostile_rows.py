"""What the client accepts, every reader can read; and a row that cannot be processed (written
by hand in SQL) fails alone, with a clear error, while the worker goes on with its batch."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest

from kubetasks import InvalidTaskError, TaskResultStatus
from kubetasks.backends import PostgresBackend
from kubetasks.identity import WorkerIdentity
from kubetasks.store import Store
from tests.integration import hostile_tasks, worker_tasks
from tests.integration.worker_process import WorkerProcess, wait_state, wait_until

pytestmark = pytest.mark.timeout(90)
MODULE = "tests.integration.worker_tasks"
EARLIEST = datetime(1, 1, 2, tzinfo=UTC)
LATEST = datetime(9999, 12, 30, 23, 59, 59, 999999, tzinfo=UTC)


def stored(dsn: str, task_id: int) -> tuple[str, str | None, Any]:
    """State, last error message and return value, read in SQL: the client's readers need not
    read a forged row."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT state::text, errors->-1->>'message', return_value::text "
                           "FROM kubetasks_tasks WHERE id = %s", [task_id]).fetchone()
    assert row is not None
    return row[0], row[1], None if row[2] is None else json.loads(row[2])


def wait_stored(dsn: str, task_id: int) -> tuple[str, str | None, Any]:
    def finished() -> tuple[str, str | None, Any] | None:
        found = stored(dsn, task_id)
        return found if found[0] in ("SUCCESSFUL", "FAILED") else None
    return wait_until(finished, what=f"task {task_id} finished")


def forge(dsn: str, *, args: str = "[]", kwargs: str = "{}", errors: str = "[]",
          run_after: str = "now()", expected_at: str = "NULL",
          task_name: str = f"{MODULE}.add") -> int:
    """A row written in SQL, past the client's checks."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "INSERT INTO kubetasks_tasks (queue_name, task_name, args, kwargs, errors, run_after,"
            f" expected_at) VALUES (%s, %s, %s, %s, %s, {run_after}, {expected_at}) RETURNING id",
            [worker_tasks.QUEUE, task_name, args, kwargs, errors]).fetchone()
        assert row is not None
        return int(row[0])


@pytest.fixture
def far_east_store(dsn: str) -> Iterator[Store]:
    """A reader whose session is 14 hours ahead of UTC, as a server's TimeZone may be."""
    store = Store(dsn + "?options=-c%20timezone%3DPacific/Kiritimati")
    yield store
    store.close()


def test_times_at_the_bounds_round_trip_in_any_time_zone(
        backend: PostgresBackend, store: Store, far_east_store: Store, dsn: str) -> None:
    early = worker_tasks.add.using(run_after=EARLIEST.astimezone(timezone(timedelta(hours=-14))),
                                   expected_at=LATEST.astimezone(timezone(timedelta(hours=14))))
    result = early.enqueue(1, 2)
    for reader in (store, far_east_store):
        record = reader.get(result.id)
        assert (record.run_after, record.expected_at) == (EARLIEST, LATEST)
        assert [s.next_deadline for s in reader.queue_stats([worker_tasks.QUEUE])] == [LATEST]
    with pytest.raises(InvalidTaskError, match=r"run_after 0001-01-01T00:00:00\+14:00 is out"):
        worker_tasks.add.using(
            run_after=datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14)))).enqueue(1, 2)
    with pytest.raises(InvalidTaskError, match=r"expected_at 9999-12-31T23:00:00-14:00 is out"):
        worker_tasks.add.using(expected_at=datetime(
            9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-14)))).enqueue(1, 2)
    assert len(store.list_tasks()) == 1  # the refused ones wrote nothing


def test_times_no_datetime_holds_read_as_the_earliest_or_the_latest(
        backend: PostgresBackend, store: Store, far_east_store: Store, dsn: str) -> None:
    never = forge(dsn, run_after="'infinity'")
    late = forge(dsn, run_after="now()", expected_at="'9999-12-31 23:00-14'")
    for reader in (store, far_east_store):
        assert reader.get(never).run_after == datetime.max.replace(tzinfo=UTC)
        assert reader.get(late).expected_at == datetime.max.replace(tzinfo=UTC)
        assert reader.next_run_after([worker_tasks.QUEUE]) is not None
        assert reader.queue_stats()[0].next_deadline == datetime.max.replace(tzinfo=UTC)
        assert reader.deadline_work(worker_tasks.QUEUE)[0].expected_at.year == 9999


def test_claimed_rows_that_cannot_be_read_fail_alone(store: Store, dsn: str) -> None:
    good = [forge(dsn, args="[1, 2]") for _ in range(3)]
    huge = forge(dsn, args="[" + "9" * 5000 + "]")
    bad_errors = forge(dsn, errors='{"not": "a list"}')
    claimed = store.claim([worker_tasks.QUEUE], 10, WorkerIdentity("pod", "uid", "nonce"))
    assert sorted(r.id for r in claimed) == good
    for task_id in (huge, bad_errors):
        state, message, _ = stored(dsn, task_id)
        assert state == "FAILED" and message is not None, (task_id, state)
        assert message.startswith(f"task {task_id} cannot be read from its row")


def test_forged_rows_fail_alone_and_the_worker_runs_the_rest_of_its_batch(
        backend: PostgresBackend, store: Store, dsn: str, tmp_path: Path) -> None:
    forged = {
        "year 0": forge(dsn, run_after="'0001-01-01 00:00+14'"),
        "-infinity": forge(dsn, run_after="'-infinity'", args="[3, 4]"),
        "year 10000 deadline": forge(dsn, expected_at="'9999-12-31 23:00-14'", args="[5, 6]"),
        "args an object": forge(dsn, args='{"a": 1}'),
        "kwargs a list": forge(dsn, args="[1]", kwargs="[2]"),
        "huge int": forge(dsn, args="[" + "9" * 5000 + ", 1]"),
        "errors an object": forge(dsn, args="[1, 1]", errors='{"x": 1}'),
    }
    innocent = [worker_tasks.add.enqueue(i, i) for i in range(5)]
    with WorkerProcess(dsn, tmp_path, "--concurrency", "16") as worker:
        done = {key: wait_stored(dsn, task_id) for key, task_id in forged.items()}
        assert [wait_state(store, r.id).return_value for r in innocent] == [0, 2, 4, 6, 8]
        later = worker_tasks.add.enqueue(20, 22)
        assert wait_state(store, later.id).return_value == 42  # the same process goes on
        worker.wait_ready()

    # Readable once read within bounds: they run.
    assert done["-infinity"][2] == 7 and done["year 10000 deadline"][2] == 11
    for key in ("year 0", "args an object", "kwargs a list", "huge int", "errors an object"):
        state, message, _ = done[key]
        assert state == "FAILED" and message, (key, done[key])
    assert "missing a required argument: 'a'" in str(done["year 0"][1])
    assert "args must be a JSON list and kwargs a JSON object" in str(done["kwargs a list"][1])
    for key in ("huge int", "errors an object"):
        assert f"task {forged[key]} cannot be read from its row" in str(done[key][1])


def test_outcomes_that_cannot_be_written_as_they_are_end_failed_alone(
        backend: PostgresBackend, store: Store, dsn: str, tmp_path: Path) -> None:
    path = tmp_path / "attempts.txt"
    with WorkerProcess(dsn, tmp_path, "--import", "tests.integration.hostile_tasks"):
        never = hostile_tasks.retries_never.enqueue()
        ages = hostile_tasks.retries_in_ages.enqueue()
        lucky = hostile_tasks.fails_once.enqueue(str(path))
        plain = [worker_tasks.add.enqueue(i, 1) for i in range(3)]
        never_record = wait_state(store, never.id)
        lucky_record = wait_state(store, lucky.id)
        assert [wait_state(store, r.id).return_value for r in plain] == [1, 2, 3]

        def retried() -> Any:
            record = store.get(ages.id)
            return record if record.state == TaskResultStatus.READY and record.errors else None
        ages_record = wait_until(retried, what="the retry in ages written")

    assert never_record.state == TaskResultStatus.FAILED
    assert never_record.errors[0].message.startswith(
        "the retry delay inf from Retry(delay=...) is not a finite number of seconds")
    assert ages_record.run_after == LATEST and ages_record.attempts == 1
    assert lucky_record.return_value == "second time lucky"
    assert path.read_text().count("attempt\n") == 2
