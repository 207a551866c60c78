"""What a queue's limits cost the claim: ``Store.claim`` + ``Store.complete`` in a loop, without
worker processes, so the statements themselves are measured.

For a queue without settings, with a cap that never binds (``max_running`` 1,000,000: the
settings row is locked and RUNNING counted on every claim) and with a rate that never binds,
from 1 and 4 claimer threads: tasks per second, and the claim's round trip (p50, p99).
``--statements`` times the two claim statements alone on one connection instead (interleaved
blocks over a backlog of ``--tasks``): ``claim_tasks``, and ``lock_limited_queues`` +
``claim_limited_tasks`` in their transaction.

    python bench/claim_limits.py [--tasks 20000] [--batch 32] [--statements] [--output FILE]

Runs against any kubetasks that has ``Store.claim`` (settings are skipped where the store has
no ``set_limits``), so the same script measures the code before the limits too.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import psycopg  # noqa: E402
from localcluster.postgres import LocalPostgres  # noqa: E402

from kubetasks.identity import WorkerIdentity  # noqa: E402
from kubetasks.migrations import migrate  # noqa: E402
from kubetasks.request import EnqueueRequest  # noqa: E402
from kubetasks.store import Outcome, Store  # noqa: E402

QUEUE = "bench"


def fill(store: Store, dsn: str, tasks: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE kubetasks_tasks")
    for start in range(0, tasks, 5000):
        store.enqueue([EnqueueRequest(task_name="noop", queue_name=QUEUE, priority=0, args=[],
                                      kwargs={}, context={}, run_after=None, expected_at=None,
                                      max_attempts=1) for _ in range(start, min(tasks, start + 5000))])
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE kubetasks_tasks")


def drain(store: Store, threads: int, batch: int) -> tuple[float, list[float]]:
    """Tasks per second and every claim's seconds, draining the queue with ``threads``."""
    rounds: list[float] = []
    done = [0]
    lock = threading.Lock()

    def claimer(index: int) -> None:
        me = WorkerIdentity(pod_name=f"bench-{index}", pod_uid=f"uid-{index}", nonce="n")
        while True:
            began = time.perf_counter()
            got = store.claim([QUEUE], batch, me)
            took = time.perf_counter() - began
            if not got:
                return
            store.complete([Outcome(r.claim_id, "null", 0.0) for r in got if r.claim_id])
            with lock:
                rounds.append(took)
                done[0] += len(got)

    workers = [threading.Thread(target=claimer, args=(i,)) for i in range(threads)]
    began = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return done[0] / (time.perf_counter() - began), rounds


def set_mode(store: Store, mode: str) -> bool:
    if mode == "no settings":
        return True
    if not hasattr(store, "set_limits"):
        return False
    from kubetasks.records import QueueSettings
    if mode == "cap (never binds)":
        store.set_limits(QueueSettings(QUEUE, max_running=1_000_000))
    else:
        store.set_limits(QueueSettings(QUEUE, rate_limit=1_000_000,
                                       rate_period=timedelta(seconds=1)))
    return True


def time_statements(dsn: str, tasks: int, batch: int) -> list[str]:
    """Median milliseconds per claim of ``batch`` of each statement, in 30 interleaved blocks."""
    from kubetasks.queries import query
    from kubetasks.records import QueueSettings
    with Store(dsn) as store:
        fill(store, dsn, tasks)
        store.set_limits(QueueSettings("capped", max_running=1_000_000))
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE kubetasks_tasks SET queue_name = 'capped' WHERE id % 2 = 0")
        conn.execute("VACUUM ANALYZE kubetasks_tasks")
        params = {"limit": batch, "pod_name": "p", "pod_uid": "u", "nonce": "n", "worker_id": "p/n"}

        def finish(rows: list[tuple[Any, ...]]) -> None:
            # Completed at once, as workers would: RUNNING stays small, as under a real cap.
            conn.execute("UPDATE kubetasks_tasks SET state = 'SUCCESSFUL', claim_id = NULL, "
                         "heartbeat_at = NULL, finished_at = now() WHERE id = ANY(%s)",
                         [[row[0] for row in rows]])

        def plain() -> float:
            began = time.perf_counter()
            rows = conn.execute(query("claim_tasks"), {**params, "queue_names": [QUEUE]},
                                prepare=True).fetchall()
            took = time.perf_counter() - began
            finish(rows)
            return took

        def limited() -> float:
            began = time.perf_counter()
            with conn.transaction():
                conn.execute(query("lock_limited_queues"), {"queue_names": ["capped"]}, prepare=True)
                rows = conn.execute(query("claim_limited_tasks"),
                                    {**params, "queue_names": ["capped"]}, prepare=True).fetchall()
            took = time.perf_counter() - began
            finish(rows)
            return took

        blocks: dict[str, list[float]] = {"claim_tasks": [], "lock + claim_limited_tasks": []}
        rounds = max(1, tasks // 2 // batch // 30)
        for _ in range(30):
            for name, call in (("claim_tasks", plain), ("lock + claim_limited_tasks", limited)):
                blocks[name].append(sum(call() for _ in range(rounds)) / rounds * 1000)
    return [f"| {name} | {statistics.median(ms):.2f} | {min(ms):.2f} |" for name, ms in blocks.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--output", type=Path)
    parser.add_argument("--statements", action="store_true")
    options = parser.parse_args()
    if options.statements:
        with LocalPostgres() as server:
            migrate(server.dsn)
            lines = ["| statement | median ms per claim | fastest block ms |", "|---|---:|---:|",
                     *time_statements(server.dsn, options.tasks, options.batch)]
        print("\n".join(lines))
        return
    lines = ["| settings | threads | tasks/s | claim p50 ms | claim p99 ms |", "|---|---:|---:|---:|---:|"]
    with LocalPostgres() as server:
        migrate(server.dsn)
        for mode in ("no settings", "cap (never binds)", "rate (never binds)"):
            for threads in (1, 4):
                with Store(server.dsn, max_size=threads + 1) as store:
                    if not set_mode(store, mode):
                        continue
                    fill(store, server.dsn, options.tasks)
                    rate, rounds = drain(store, threads, options.batch)
                q = statistics.quantiles(rounds, n=100)
                lines.append(f"| {mode} | {threads} | {rate:,.0f} | {q[49] * 1000:.2f} | "
                             f"{q[98] * 1000:.2f} |")
                print(lines[-1], flush=True)
    load = " ".join(f"{value:.1f}" for value in os.getloadavg())
    text = "\n".join(lines) + f"\n\nload average at the end: {load}\n"
    if options.output:
        options.output.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
