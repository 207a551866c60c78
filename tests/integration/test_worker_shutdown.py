"""Stopping and losing workers: SIGTERM drains or puts back, SIGKILL leaves the claim for the
next process of the pod, and a worker whose claim was taken away cannot write its result."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from kubetasks import TaskResultStatus
from kubetasks.backends import PostgresBackend
from kubetasks.store import Store
from tests.integration import worker_tasks
from tests.integration.worker_process import WorkerProcess, wait_state, wait_until

pytestmark = pytest.mark.timeout(90)


def test_sigterm_lets_a_running_task_finish(backend: PostgresBackend, store: Store, dsn: str,
                                            tmp_path: Path) -> None:
    path = tmp_path / "ran.txt"
    with WorkerProcess(dsn, tmp_path, "--grace-period", "10") as worker:
        worker.wait_ready()
        result = worker_tasks.record.enqueue(str(path), "finished", 1.0)
        wait_state(store, result.id, finished=False)
        # Claimed is not yet started: a claim answered after SIGTERM is put back unstarted.
        wait_until(lambda: worker.metric("kubetasks_worker_tasks_running") == 1, timeout=5,
                   what="the task function running")
        worker.send(signal.SIGTERM)
        wait_until(lambda: worker.get("/readyz") == (503, "draining: stopping after SIGTERM\n"),
                   timeout=2, what="/readyz to report draining")
        later = worker_tasks.record.enqueue(str(path), "not claimed while draining")
        assert worker.wait(10) == 0

    record = store.get(result.id)
    assert record.state == TaskResultStatus.SUCCESSFUL and record.return_value == "finished"
    assert store.get(later.id).state == TaskResultStatus.READY
    assert path.read_text().split("\n")[0] == "finished"


def test_sigterm_puts_back_what_outlives_the_grace_period(
        backend: PostgresBackend, store: Store, dsn: str, tmp_path: Path) -> None:
    path = str(tmp_path / "ran.txt")
    with WorkerProcess(dsn, tmp_path, "--grace-period", "0.5") as worker:
        sync = worker_tasks.record.enqueue(path, "sync", 30.0)
        in_async = worker_tasks.record_async.enqueue(path, "async", 30.0)
        wait_state(store, sync.id, finished=False)
        wait_state(store, in_async.id, finished=False)
        worker.send(signal.SIGTERM)
        assert worker.wait(10) == 0  # without waiting for the sync task's thread
        assert len([e for e in worker.logs() if "put back unfinished" in e["message"]]) == 2

    for task_id in (sync.id, in_async.id):
        record = store.get(task_id)
        assert record.state == TaskResultStatus.READY, record
        assert record.attempts == 0 and record.lost_count == 0 and record.errors == []
        assert record.claim_id is None


def test_sigkill_leaves_the_claim_and_a_restart_of_the_pod_returns_it(
        backend: PostgresBackend, store: Store, dsn: str, tmp_path: Path) -> None:
    path = str(tmp_path / "ran.txt")
    pod_uid = "pod-that-gets-oom-killed"
    with WorkerProcess(dsn, tmp_path, pod_uid=pod_uid) as first:
        result = worker_tasks.slow_until_lost.enqueue(path, 60.0)
        wait_state(store, result.id, finished=False)
        first.send(signal.SIGKILL)
        assert first.wait(10) == -signal.SIGKILL

    held = store.get(result.id)
    assert held.state == TaskResultStatus.RUNNING and held.claim_id is not None
    assert held.worker_pod_uid == pod_uid

    with WorkerProcess(dsn, tmp_path, pod_uid=pod_uid) as restarted:
        record = wait_state(store, result.id)
        assert restarted.metric("kubetasks_worker_lost_tasks_returned_total",
                                queue=worker_tasks.QUEUE) == 1
    assert record.state == TaskResultStatus.SUCCESSFUL and record.return_value == "lost=1"
    assert record.lost_count == 1 and record.attempts == 1
    assert record.errors[0].exception_class_path == "kubetasks.exceptions.TaskLost"


def test_a_worker_whose_claim_was_taken_away_cannot_write_its_result(
        backend: PostgresBackend, store: Store, dsn: str, tmp_path: Path) -> None:
    path = tmp_path / "ran.txt"
    with WorkerProcess(dsn, tmp_path, "--concurrency", "2", "--heartbeat-interval", "0.2",
                       ) as worker:
        result = worker_tasks.slow_until_lost.enqueue(str(path), 1.5)
        wait_state(store, result.id, finished=False)
        zombie_claim = store.get(result.id).claim_id
        assert zombie_claim is not None
        # As the operator does when it believes the process is gone.
        requeued = store.requeue_claims([zombie_claim], reason="presumed lost", max_lost=3)
        assert [t.state for t in requeued] == [TaskResultStatus.READY]

        # The same worker has a free slot and runs the new attempt; the zombie finishes later.
        worker.wait_for_log("claim taken away while the task runs")
        worker.wait_for_log("outcome not recorded: the claim was taken away")
        assert worker.metric("kubetasks_worker_claims_lost_total",
                             queue=worker_tasks.QUEUE) == 1  # seen twice, counted once

    record = store.get(result.id)
    assert record.state == TaskResultStatus.SUCCESSFUL
    assert record.return_value == "lost=1"  # the new attempt's result stands
    assert sorted(path.read_text().split("\n")[:2]) == ["finished lost=0", "finished lost=1"]
