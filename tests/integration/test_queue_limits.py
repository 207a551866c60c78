"""Paused queues, a cap on RUNNING tasks and a rate of starts, kept by the database across
several real worker processes."""

from __future__ import annotations

import signal
import threading
import time
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from kubetasks.backends import PostgresBackend
from kubetasks.identity import WorkerIdentity
from kubetasks.records import QueueSettings
from kubetasks.store import Store
from tests.integration import limit_tasks
from tests.integration.limit_tasks import QUEUE, most_at_once, spans, timed
from tests.integration.worker_process import WorkerProcess, wait_until

pytestmark = pytest.mark.timeout(120)


def workers(dsn: str, directory: Path, count: int, concurrency: int) -> list[WorkerProcess]:
    started = [WorkerProcess(dsn, directory, "--import", limit_tasks.__name__, "--queue", QUEUE,
                             "--concurrency", str(concurrency), name=f"w{i}").start()
               for i in range(count)]
    for worker in started:
        worker.wait_ready()
    return started


def stop(started: list[WorkerProcess]) -> None:
    for worker in started:
        worker.send(signal.SIGTERM)
    assert [worker.wait() for worker in started] == [0] * len(started)


def states(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT state::text, count(*) FROM kubetasks_tasks GROUP BY 1")
        return {state: count for state, count in rows}


def sample_running(dsn: str, until: threading.Event) -> list[int]:
    """RUNNING counts of the queue, read over and over until ``until`` is set."""
    counts: list[int] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        while not until.is_set():
            row = conn.execute("SELECT count(*) FROM kubetasks_tasks WHERE state = 'RUNNING' "
                               "AND queue_name = %s", [QUEUE]).fetchone()
            assert row is not None
            counts.append(int(row[0]))
    return counts


def test_three_workers_never_run_more_than_the_cap(backend: PostgresBackend, store: Store,
                                                  dsn: str, tmp_path: Path) -> None:
    store.set_limits(QueueSettings(QUEUE, max_running=3))
    # 6 slots for a cap of 3; no worker can reach the cap alone, so they share it.
    started = workers(dsn, tmp_path, count=3, concurrency=2)
    path = str(tmp_path / "runs.txt")
    done = threading.Event()
    sampled: list[list[int]] = []
    sampler = threading.Thread(target=lambda: sampled.append(sample_running(dsn, done)))
    sampler.start()
    try:
        timed.enqueue_many([(path, 0.05)] * 60)
        wait_until(lambda: states(dsn) == {"SUCCESSFUL": 60}, timeout=90,
                   what=f"60 tasks SUCCESSFUL, have {states(dsn)}")
    finally:
        done.set()
        sampler.join()
        stop(started)

    [counts] = sampled
    assert len(counts) > 100 and max(counts) <= 3
    runs = spans(path)
    assert len(runs) == 60 and most_at_once(runs) <= 3
    assert len({r.worker_pod for r in store.list_tasks(queue_name=QUEUE, limit=100)}) >= 2


def test_concurrent_claimers_keep_the_cap(store: Store) -> None:
    """Twelve claimer threads asking for many tasks at once never hold more than the cap."""
    store.set_limits(QueueSettings(QUEUE, max_running=5))
    timed.using(backend=PostgresBackend(store)).enqueue_many([("/dev/null", 0)] * 200)
    claimed: list[int] = []
    barrier = threading.Barrier(12)

    def claimer(index: int) -> None:
        barrier.wait()
        try:
            got = store.claim([QUEUE], 4, WorkerIdentity(pod_name=f"p{index}",
                                                         pod_uid=f"u{index}", nonce="n"))
        except Exception as error:  # reported by the assertion below, too
            claimed.append(-1)
            raise AssertionError(f"claimer {index} failed: {error!r}") from error
        claimed.append(len(got))

    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert len(claimed) == 12 and -1 not in claimed and sum(claimed) == 5
    assert [s.running for s in store.queue_stats([QUEUE])] == [5]


def test_starts_follow_the_rate(backend: PostgresBackend, store: Store, dsn: str,
                                tmp_path: Path) -> None:
    """5 starts per second: a burst of 5, then one every 0.2 s, however many workers ask."""
    path = str(tmp_path / "runs.txt")
    timed.enqueue_many([(path, 0.0)] * 20)
    set_at = time.time()  # the bucket's clock starts at or after this
    store.set_limits(QueueSettings(QUEUE, rate_limit=5, rate_period=timedelta(seconds=1)))
    started = workers(dsn, tmp_path, count=2, concurrency=8)
    try:
        wait_until(lambda: states(dsn) == {"SUCCESSFUL": 20}, timeout=60,
                   what=f"20 tasks SUCCESSFUL, have {states(dsn)}")
    finally:
        stop(started)

    starts = [start for start, _ in spans(path)]
    assert len(starts) == 20
    for count, start in enumerate(starts, 1):  # each run starts after its claim took a token
        assert count <= 5 + 5 * (start - set_at) + 1e-6, (count, start - set_at)


def test_a_paused_queue_takes_enqueues_and_finishes_what_runs(
        backend: PostgresBackend, store: Store, dsn: str, tmp_path: Path) -> None:
    path = str(tmp_path / "runs.txt")
    started = workers(dsn, tmp_path, count=1, concurrency=4)
    try:
        running = timed.enqueue(path, 1.0)
        wait_until(lambda: store.get(running.id).state == "RUNNING", what="the first task RUNNING")
        assert store.set_paused(QUEUE, True).paused

        waiting = timed.enqueue_many([(path, 0.0)] * 3)  # enqueues still land
        wait_until(lambda: store.get(running.id).state == "SUCCESSFUL", what="the running task")
        time.sleep(1.0)  # the idle worker was woken by the enqueue and the finish: it claims nothing
        assert {store.get(r.id).state for r in waiting} == {"READY"}

        assert not store.set_paused(QUEUE, False).paused  # its NOTIFY wakes the worker
        wait_until(lambda: states(dsn) == {"SUCCESSFUL": 4}, what=f"all done, have {states(dsn)}")
    finally:
        stop(started)
    assert [s.paused for s in store.queue_settings([QUEUE, "other"])] == [False, False]


def test_limits_refuse_bad_values_naming_them() -> None:
    with pytest.raises(ValueError, match="max_running 0 of queue 'q'"):
        QueueSettings("q", max_running=0)
    with pytest.raises(ValueError, match="needs both"):
        QueueSettings("q", rate_limit=3)
    with pytest.raises(ValueError, match="rate period"):
        QueueSettings("q", rate_limit=3, rate_period=timedelta(0))
