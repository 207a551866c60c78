"""Real worker processes claiming and running tasks: exactly once, woken by NOTIFY, observable."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import psycopg
import pytest

from kubetasks import TaskResultStatus
from kubetasks.backends import PostgresBackend
from kubetasks.store import Store
from tests.integration import worker_tasks
from tests.integration.worker_process import (
    WorkerProcess,
    learned_durations,
    wait_state,
    wait_until,
)

pytestmark = pytest.mark.timeout(90)


def states(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT state::text, count(*) FROM kubetasks_tasks GROUP BY 1")
        return {state: count for state, count in rows}


def test_three_workers_run_every_task_exactly_once(backend: PostgresBackend, store: Store,
                                                   dsn: str, tmp_path: Path) -> None:
    workers = [WorkerProcess(dsn, tmp_path, "--concurrency", "4", name=f"w{i}").start()
               for i in range(3)]
    try:
        for worker in workers:
            worker.wait_ready()
        path = str(tmp_path / "ran.txt")
        # Half sync, half async; a little work each, so that all three workers get a share.
        worker_tasks.record.enqueue_many([(path, str(n), 0.002) for n in range(0, 900, 2)])
        worker_tasks.record_async.enqueue_many([(path, str(n), 0.002) for n in range(1, 900, 2)])

        wait_until(lambda: states(dsn) == {"SUCCESSFUL": 900}, timeout=60,
                   what=f"900 tasks SUCCESSFUL, have {states(dsn)}")
        ran = Path(path).read_text().split()
        assert sorted(ran, key=int) == [str(n) for n in range(900)]  # each exactly once

        records = store.list_tasks(limit=1000)
        assert all(r.attempts == 1 and r.lost_count == 0 and r.claim_id is None for r in records)
        assert {r.return_value for r in records} == {str(n) for n in range(900)}
        assert len({r.worker_pod for r in records}) >= 2, "the work was not shared"
    finally:
        for worker in workers:
            worker.send(signal.SIGTERM)
        assert [worker.wait() for worker in workers] == [0, 0, 0]


def test_notify_wakes_an_idle_worker_at_once(backend: PostgresBackend, store: Store, dsn: str,
                                             tmp_path: Path) -> None:
    path = tmp_path / "started.txt"
    with WorkerProcess(dsn, tmp_path, "--poll-interval", "30") as worker:
        worker.wait_ready()
        time.sleep(0.3)  # let it settle into its 30 s idle sleep
        delays = []
        for _ in range(3):
            enqueued = time.time()
            result = worker_tasks.record_start_time.enqueue(str(path))
            assert wait_state(store, result.id).state == TaskResultStatus.SUCCESSFUL
            delays.append(float(path.read_text().split()[-1]) - enqueued)
        assert max(delays) < 2.0, delays  # polling alone would take up to 30 s


def test_polling_without_listen_finds_new_tasks(backend: PostgresBackend, store: Store, dsn: str,
                                                tmp_path: Path) -> None:
    with WorkerProcess(dsn, tmp_path, "--no-listen", "--poll-interval", "0.2") as worker:
        worker.wait_ready()
        worker.wait_for_log("polling only")
        result = worker_tasks.add.enqueue(2, 3)
        assert wait_state(store, result.id, timeout=5).return_value == 5


def test_cancelled_task_never_runs(backend: PostgresBackend, store: Store, dsn: str,
                                   tmp_path: Path) -> None:
    path = tmp_path / "ran.txt"
    cancelled = worker_tasks.record.enqueue(str(path), "cancelled")
    assert store.cancel(cancelled.id)
    after = worker_tasks.record.enqueue(str(path), "after")
    with WorkerProcess(dsn, tmp_path) as worker:
        worker.wait_ready()
        assert wait_state(store, after.id).state == TaskResultStatus.SUCCESSFUL
    assert path.read_text().split() == ["after"]
    assert store.get(cancelled.id).state == TaskResultStatus.CANCELLED


def test_probes_and_metrics(backend: PostgresBackend, store: Store, dsn: str,
                            tmp_path: Path) -> None:
    with WorkerProcess(dsn, tmp_path) as worker:
        worker.wait_ready()
        assert worker.get("/healthz") == (200, "ok\n")
        assert worker.get("/readyz") == (200, "ok\n")
        assert worker.get("/nothing-here")[0] == 404
        queue, name = worker_tasks.QUEUE, "tests.integration.worker_tasks.add"
        assert worker.metric("kubetasks_worker_tasks_claimed_total", queue=queue) == 0

        results = worker_tasks.add.enqueue_many([(1, 1), (2, 2), (3, 3)])
        failing = worker_tasks.fails_now.enqueue()
        for task_id in [*(r.id for r in results), failing.id]:
            wait_state(store, task_id)

        assert worker.metric("kubetasks_worker_tasks_claimed_total", queue=queue) == 4
        assert worker.metric("kubetasks_worker_tasks_succeeded_total", queue=queue,
                             task_name=name) == 3
        assert worker.metric("kubetasks_worker_tasks_failed_total", queue=queue,
                             task_name="tests.integration.worker_tasks.fails_now") == 1
        assert worker.metric("kubetasks_worker_task_duration_seconds_count", task_name=name) == 3
        assert worker.metric("kubetasks_worker_queue_wait_seconds_count", queue=queue) == 4
        assert worker.metric("kubetasks_worker_tasks_running") == 0
        assert learned_durations(store)[name] >= 0  # the scaler's estimate learned from these runs
