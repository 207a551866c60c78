"""What one scaling step of the operator costs the database as the task table grows.

Starts its own throwaway PostgreSQL (fsync off), fills one queue with READY tasks (a fifth of them
with deadlines, five task names, three with learned durations, eight RUNNING) beside nine other
queues of 1,000 tasks each, and times the operator's own step for that queue (a real
``QueueController.step``: every statement it sends for statistics, settings and schedules) with
the Kubernetes side answered in memory. Each statement the step sends is counted and timed;
"database" is a step's statements together (sent, run and decoded), the rest of "step" is the
controller's Python (the policy, the status, the metrics).

Sizes: 10k, 100k and 1M READY; then 100k READY beside 1M finished (SUCCESSFUL) rows.

    python -m bench.queue_statistics [--rounds 50]     # results: bench/RESULTS-statistics.md
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from localcluster.postgres import LocalPostgres

from kubetasks.migrations import migrate
from kubetasks.store import Store
from kubetasks_operator.controller import QueueController
from kubetasks_operator.spec import parse_spec

RESULTS = Path(__file__).with_name("RESULTS-statistics.md")
QUEUE = "bench"
NAMES = ("resize", "transcode", "ocr", "report", "never-finished")


class TimedStore(Store):
    """The real store, counting and timing each named statement it sends."""

    def __init__(self, conninfo: str) -> None:
        super().__init__(conninfo, max_size=2)
        self.timings: dict[str, list[float]] = defaultdict(list)

    def _rows(self, name: str, params: dict[str, Any],
              connection: psycopg.Connection[Any] | None = None, *,
              binary: bool = False) -> list[dict[str, Any]]:
        started = time.perf_counter()
        try:
            return super()._rows(name, params, connection, binary=binary)
        finally:
            self.timings[name].append(time.perf_counter() - started)


@dataclass
class MemoryKube:
    """The Kubernetes side of a step, answered at once: a Deployment at 2 ready replicas."""

    replicas: int = 2
    statuses: list[dict[str, Any]] = field(default_factory=list)

    def deployment_state(self, namespace: str, name: str) -> tuple[int, int, str | None]:
        return self.replicas, self.replicas, None

    def apply_deployment(self, body: dict[str, Any]) -> str:
        return "unchanged"

    def scale_deployment(self, namespace: str, name: str, replicas: int) -> None:
        self.replicas = replicas

    def annotate_pod(self, namespace: str, name: str, annotations: dict[str, str]) -> None:
        pass

    def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.statuses.append(status)


def fill(dsn: str, *, ready: int, finished: int = 0) -> None:
    """The bench queue with ``ready`` READY tasks (and ``finished`` SUCCESSFUL ones), from empty."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM kubetasks_tasks WHERE queue_name = %s", (QUEUE,))
        conn.execute(
            "INSERT INTO kubetasks_tasks (queue_name, task_name, expected_at) "
            "SELECT %s, (%s::text[])[1 + i %% 5], "
            "       CASE WHEN i %% 5 = 0 THEN now() + (i %% 3600) * interval '1 second' END "
            "FROM generate_series(1, %s) AS i", (QUEUE, list(NAMES), ready))
        if finished:
            conn.execute(
                "INSERT INTO kubetasks_tasks (queue_name, task_name, state, finished_at, attempts) "
                "SELECT %s, (%s::text[])[1 + i %% 5], 'SUCCESSFUL', now() - interval '1 hour', 1 "
                "FROM generate_series(1, %s) AS i", (QUEUE, list(NAMES), finished))
        conn.execute(
            "UPDATE kubetasks_tasks SET state = 'RUNNING', claim_id = gen_random_uuid(), attempts = 1, "
            "worker_pod = 'w-' || (id %% 2), worker_pod_uid = 'uid-' || (id %% 2), "
            "heartbeat_at = now(), last_attempted_at = now() - interval '30 seconds' "
            "WHERE id IN (SELECT id FROM kubetasks_tasks WHERE queue_name = %s AND state = 'READY' "
            "             ORDER BY id LIMIT 8)", (QUEUE,))
        conn.execute("VACUUM ANALYZE kubetasks_tasks")


def prepare(dsn: str) -> None:
    migrate(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO kubetasks_tasks (queue_name, task_name) "
            "SELECT 'other-' || (i % 9), 'resize' FROM generate_series(1, 9000) AS i")
        conn.execute("INSERT INTO kubetasks_durations (task_name, mean_seconds, samples) "
                     "VALUES ('resize', 1.5, 100), ('transcode', 40, 100), ('ocr', 8, 100)")


def rounds(store: TimedStore, count: int) -> tuple[list[float], list[float], dict[str, list[float]]]:
    """Each step's wall time, each step's database time (its statements, sent and decoded),
    and every statement's times by name."""
    spec = parse_spec({"worker": {"image": "app:1"}, "queueName": QUEUE,
                       "database": {"secretRef": {"name": "db"}}, "scaling": {"maxReplicas": 20}})
    controller = QueueController(kube=MemoryKube(), store=store, namespace="default", name=QUEUE,
                                 queue_name=QUEUE, spec=spec, post_event=lambda *_: None)
    controller.step(datetime.now(UTC), {})  # the first step writes settings once; not timed
    store.timings.clear()
    totals, database = [], []
    for _ in range(count):
        before = sum(map(sum, store.timings.values()))
        started = time.perf_counter()
        controller.step(datetime.now(UTC), {"uid-0": "w-0", "uid-1": "w-1"})
        totals.append(time.perf_counter() - started)
        database.append(sum(map(sum, store.timings.values())) - before)
    return totals, database, dict(store.timings)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@contextmanager
def server() -> Iterator[str]:
    with LocalPostgres() as postgres:
        yield postgres.dsn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--output", type=Path, default=RESULTS,
                        help="where to write the table (default: %(default)s)")
    args = parser.parse_args()
    sizes = [(int(n), 0) for n in args.sizes.split(",")] + [(100_000, 1_000_000)]
    lines = ["| table | step p50 ms | step p99 ms | statements per step | database p50 ms | "
             "database p99 ms | slowest statement (p50 ms) |",
             "|---|---:|---:|---:|---:|---:|---|"]
    with server() as dsn:
        prepare(dsn)
        for ready, finished in sizes:
            fill(dsn, ready=ready, finished=finished)
            store = TimedStore(dsn)
            try:
                totals, database, timings = rounds(store, args.rounds)
            finally:
                store.close()
            per_step = sum(len(v) for v in timings.values()) / args.rounds
            slowest = max(timings, key=lambda name: statistics.median(timings[name]))
            label = f"{ready:,} READY" + (f" + {finished:,} SUCCESSFUL" if finished else "")
            lines.append(f"| {label} | {1000 * statistics.median(totals):.1f} | "
                         f"{1000 * percentile(totals, 0.99):.1f} | {per_step:.0f} | "
                         f"{1000 * statistics.median(database):.1f} | "
                         f"{1000 * percentile(database, 0.99):.1f} | "
                         f"{slowest} ({1000 * statistics.median(timings[slowest]):.1f}) |")
            print(lines[-1], flush=True)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    args.output.write_text(
        f"# One scaling step's database time as the table grows\n\n"
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {os.cpu_count()} cores; load average {load}\n"
        f"- reproduce: `python -m bench.queue_statistics --rounds {args.rounds}`\n\n"
        + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
