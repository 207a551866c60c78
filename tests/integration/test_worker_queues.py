"""What db_worker users count on from a worker: every queue served unless told otherwise, some
excluded, a fixed number of tasks then exit, exit once idle, polling without pause, and Ctrl-C
twice never waiting. Real ``kubetasks worker`` processes on a real PostgreSQL."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from kubetasks import TaskResultStatus
from kubetasks.backends import PostgresBackend
from kubetasks.store import Store
from tests.integration import worker_tasks
from tests.integration.worker_process import WorkerProcess, wait_state

pytestmark = pytest.mark.timeout(90)
READY, SUCCESSFUL = TaskResultStatus.READY, TaskResultStatus.SUCCESSFUL


def test_without_queue_a_worker_serves_every_queue_but_the_excluded(
        backend: PostgresBackend, store: Store, dsn: str, tmp_path: Path) -> None:
    # The decorator's queue, one named only by using(), and one excluded.
    own = worker_tasks.add.enqueue(1, 1)
    elsewhere = worker_tasks.add.using(queue_name="elsewhere").enqueue(2, 2)
    skipped = worker_tasks.add.using(queue_name="skipped").enqueue(3, 3)
    with WorkerProcess(dsn, tmp_path, "--exclude-queue", "skipped") as worker:
        assert wait_state(store, own.id).return_value == 2
        assert wait_state(store, elsewhere.id).return_value == 4
        worker.wait_for_log("serving all queues but skipped")
        # Enqueued while it waits: a queue it never saw wakes it (NOTIFY), an excluded one not.
        later = worker_tasks.add.using(queue_name="new-queue").enqueue(5, 5)
        also_skipped = worker_tasks.add.using(queue_name="skipped").enqueue(6, 6)
        assert wait_state(store, later.id).return_value == 10
        worker.send(signal.SIGTERM)
        assert worker.wait() == 0
    assert store.get(skipped.id).state == READY
    assert store.get(also_skipped.id).state == READY


def test_max_tasks_runs_that_many_then_exits_0(
        backend: PostgresBackend, store: Store, dsn: str, tmp_path: Path) -> None:
    results = [worker_tasks.add.enqueue(n, 0) for n in range(3)]
    with WorkerProcess(dsn, tmp_path, "--max-tasks", "2", "--concurrency", "1") as worker:
        assert worker.wait(30) == 0
    states = [store.get(r.id).state for r in results]
    assert states == [SUCCESSFUL, SUCCESSFUL, READY]  # claim order: the first two


def test_exit_when_idle_runs_what_is_due_then_exits_0(
        backend: PostgresBackend, store: Store, dsn: str, tmp_path: Path) -> None:
    results = [worker_tasks.add.enqueue(n, 1) for n in range(4)]
    with WorkerProcess(dsn, tmp_path, "--exit-when-idle", "--concurrency", "2") as worker:
        assert worker.wait(30) == 0
    assert [store.get(r.id).return_value for r in results] == [1, 2, 3, 4]


def test_a_zero_poll_interval_polls_without_pause(
        backend: PostgresBackend, store: Store, dsn: str, tmp_path: Path) -> None:
    with WorkerProcess(dsn, tmp_path, "--no-listen", "--poll-interval", "0") as worker:
        worker.wait_ready()
        result = worker_tasks.add.enqueue(20, 22)  # no NOTIFY is listened for: polling finds it
        assert wait_state(store, result.id).return_value == 42


def test_a_second_sigint_puts_back_running_tasks_at_once(
        backend: PostgresBackend, store: Store, dsn: str, tmp_path: Path) -> None:
    path = str(tmp_path / "ran.txt")
    with WorkerProcess(dsn, tmp_path, "--grace-period", "600") as worker:
        result = worker_tasks.record.enqueue(path, "slow", 60.0)
        wait_state(store, result.id, finished=False)
        worker.send(signal.SIGINT)
        worker.wait_for_log("stopping: no new claims")
        assert worker.process is not None and worker.process.poll() is None  # still draining
        worker.send(signal.SIGINT)
        assert worker.wait(15) == 0  # not the 600 s grace period, nor the task's 60 s
        messages = [entry["message"] for entry in worker.logs()]
        assert "stop requested again: putting back running tasks now" in messages
    record = store.get(result.id)
    assert record.state == READY and record.attempts == 0 and record.claim_id is None
