"""What a queue's limits cost the claim: ``Store.claim`` + ``Store.complete`` in a loop, without
worker processes, so the statements themselves are measured.

For a queue without settings, with a cap that never binds (``max_running`` 1,000,000: the
settings row is locked and RUNNING counted on every claim) and with a rate that never binds,
from 1 and 4 claimer threads: tasks per second, and the claim's round trip (p50, p99).

    python bench/claim_limits.py [--tasks 20000] [--batch 32] [--output bench/RESULTS-claim-limits.md]

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--output", type=Path)
    options = parser.parse_args()
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
