"""Cancelling tasks with real workers: a READY task at once, a RUNNING one within a heartbeat
(async: cancelled where it awaits; sync: through ``context.cancelled``), never retried, and
the row says who cancelled and when."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubetasks import TaskResultStatus
from kubetasks.backends import PostgresBackend
from kubetasks.cli import main
from kubetasks.identity import WorkerIdentity
from kubetasks.store import Store
from tests.integration.cancellable_tasks import poll_sync, sleep_async
from tests.integration.worker_process import WorkerProcess, wait_state

CANCELLABLE = "tests.integration.cancellable_tasks"


@pytest.fixture
def worker(dsn: str, tmp_path: Path) -> WorkerProcess:
    return WorkerProcess(dsn, tmp_path, "--import", CANCELLABLE, "--heartbeat-interval", "0.5",
                         "--concurrency", "2")


@pytest.mark.parametrize("long_task", [sleep_async, poll_sync], ids=["async", "sync"])
def test_a_running_task_is_stopped_and_ends_cancelled_without_a_retry(
        long_task: object, store: Store, backend: PostgresBackend, worker: WorkerProcess) -> None:
    with worker:
        result = long_task.enqueue(120)  # type: ignore[attr-defined]
        wait_state(store, result.id, finished=False, timeout=15)

        assert result.cancel(by="ops@example") is True
        assert result.status == TaskResultStatus.RUNNING  # until its worker stops it
        assert result.cancel() is False  # already being cancelled

        record = wait_state(store, result.id, timeout=15)  # far less than its 120 s
        logs = worker.logs()

    assert record.state == TaskResultStatus.CANCELLED
    assert (record.attempts, record.cancelled_by) == (1, "ops@example")
    assert record.cancelled_at is not None and record.finished_at is not None
    assert record.cancelled_at <= record.finished_at
    assert [line.get("event") for line in logs if line.get("task_id") == record.id][-2:] == [
        "task.cancelling", "task.cancelled"]


def test_a_ready_task_is_cancelled_at_once_and_a_finished_one_not_at_all(
        store: Store, backend: PostgresBackend) -> None:
    ready = sleep_async.using(queue_name="nobody-serves-it").enqueue(1)

    assert ready.cancel() is True
    assert ready.status == TaskResultStatus.CANCELLED
    assert ready.cancelled_by and "@" in ready.cancelled_by  # user@host of this process
    assert ready.cancel() is False
    assert store.cancel(ready.id) is False


def test_cancelling_from_the_store_reaches_the_worker_too(
        store: Store, backend: PostgresBackend, worker: WorkerProcess) -> None:
    with worker:
        first, second = sleep_async.enqueue(120), sleep_async.enqueue(0.2)
        wait_state(store, first.id, finished=False, timeout=15)
        assert store.cancel(first.id, by="kubetasks cancel") is True
        assert wait_state(store, first.id, timeout=15).state == TaskResultStatus.CANCELLED
        assert wait_state(store, second.id, timeout=15).state == TaskResultStatus.SUCCESSFUL


def test_kubetasks_cancel_of_a_running_task_records_who(
        dsn: str, store: Store, backend: PostgresBackend, capsys: pytest.CaptureFixture[str]) -> None:
    result = sleep_async.enqueue(1)
    [claimed] = store.claim(["default"], 1, WorkerIdentity("pod", "uid", "nonce"))

    code = main(["--database-url", dsn, "cancel", result.id, "--by", "ops@example"])

    assert (code, capsys.readouterr().out.strip()) == (
        0, f"cancel of task {result.id} requested; it is RUNNING until its worker stops it")
    record = store.get(result.id)
    assert (record.state, record.cancelled_by) == (TaskResultStatus.RUNNING, "ops@example")
    assert claimed.claim_id is not None
    assert store.keep_claims([claimed.claim_id]) == ({claimed.claim_id}, {claimed.claim_id})


def test_a_cancelled_task_run_again_runs_to_the_end(
        store: Store, backend: PostgresBackend, worker: WorkerProcess) -> None:
    """``kubetasks retry`` of a cancelled task: its worker must not read the old cancellation
    as a new one at the first heartbeat (0.5 s here) of a task that runs longer."""
    result = sleep_async.enqueue(2)
    assert result.cancel(by="ops@example") is True
    assert store.rerun(result.id) is True

    with worker:
        record = wait_state(store, result.id, timeout=20)

    assert record.state == TaskResultStatus.SUCCESSFUL
    assert record.return_value == "slept"
    assert (record.cancelled_at, record.cancelled_by) == (None, None)
