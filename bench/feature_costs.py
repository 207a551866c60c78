"""What schedules, cancelling and tracing add to the hot path, before and after, measured on
the statements themselves and on one attempt (no worker processes: the machine's noise would
hide microseconds).

- ``enqueue_tasks`` of 100 tasks without and with the ``trace_context`` column;
- ``heartbeat`` of 50 claims without and with the cancel flag it now returns;
- a worker's look at the schedules (``due_schedules`` + ``next_schedule_tick``) with none due;
- ``attempt.run_sync`` of a trivial task: opentelemetry absent, API only, SDK configured.

Statements run in interleaved blocks on one connection; each figure is the median block.

    python bench/feature_costs.py [--blocks 30] [--output FILE]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import timeit
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import psycopg  # noqa: E402
from localcluster.postgres import LocalPostgres  # noqa: E402

from kubetasks import configure, task, tracing  # noqa: E402
from kubetasks.identity import WorkerIdentity  # noqa: E402
from kubetasks.migrations import migrate  # noqa: E402
from kubetasks.queries import query  # noqa: E402
from kubetasks.records import TaskRecord  # noqa: E402
from kubetasks.request import EnqueueRequest  # noqa: E402
from kubetasks.result import TaskResultStatus  # noqa: E402
from kubetasks.schedules import Schedule  # noqa: E402
from kubetasks.store import Store, _enqueue_params  # noqa: E402
from kubetasks.worker import attempt  # noqa: E402

BEFORE_ENQUEUE = (query("enqueue_tasks").replace(", trace_context)", ")")
                  .replace("unique_while, trace_context\n", "unique_while\n")
                  .replace(", %(trace_context)s::jsonb[]", "")
                  .replace("trace_context, ord)", "ord)"))
BEFORE_HEARTBEAT = query("heartbeat").replace(", cancelled_at IS NOT NULL AS cancel_requested", "")


def block_ms(conn: psycopg.Connection[Any], sql: str, params: dict[str, Any], repeat: int) -> float:
    started = time.perf_counter()
    for _ in range(repeat):
        conn.execute(sql, params, prepare=True)
    return (time.perf_counter() - started) / repeat * 1000


def compare(conn: psycopg.Connection[Any], blocks: int, pairs: dict[str, tuple[str, dict[str, Any]]],
            repeat: int = 20) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in pairs}
    for _ in range(blocks):
        for name, (sql, params) in pairs.items():
            times[name].append(block_ms(conn, sql, params, repeat))
    return {name: statistics.median(values) for name, values in times.items()}


def statements(dsn: str, blocks: int) -> list[str]:
    store = Store(dsn)
    requests = [EnqueueRequest(task_name="bench.t", queue_name="bench", priority=0, args=[1],
                               kwargs={}, context={}, run_after=None, expected_at=None,
                               max_attempts=1) for _ in range(100)]
    enqueue = _enqueue_params(requests, None)
    store.enqueue(requests * 10)
    claims = [r.claim_id for r in store.claim(["bench"], 50, WorkerIdentity("p", "u", "n"))]
    lines = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        found = compare(conn, blocks, {
            "before": (BEFORE_ENQUEUE, enqueue), "after": (query("enqueue_tasks"), enqueue)},
            repeat=5)
        lines.append(f"| enqueue_tasks, 100 tasks | {found['before']:.2f} ms | {found['after']:.2f} ms |")
        beat = {"claim_ids": claims}
        found = compare(conn, blocks, {"before": (BEFORE_HEARTBEAT, beat),
                                       "after": (query("heartbeat"), beat)})
        lines.append(f"| heartbeat, 50 claims | {found['before']:.3f} ms | {found['after']:.3f} ms |")
        look = {"queue_names": ["bench"]}
        for count in (0, 100):
            if count:
                store.register_schedules([
                    Schedule(name=f"s{i}", task_name="bench.t", queue_name=f"q{i % 10}",
                             every=timedelta(hours=1)) for i in range(count)],
                    now=datetime.now(UTC))
            found = compare(conn, blocks, {"due": (query("due_schedules"), look),
                                           "next": (query("next_schedule_tick"), look)})
            lines.append(f"| a worker's look at the schedules, {count} registered | - | "
                         f"{found['due'] + found['next']:.3f} ms |")
    store.close()
    return lines


def run_sync_us(call: attempt.Call) -> float:
    return min(timeit.repeat(lambda: attempt.run_sync(call), number=20_000, repeat=5)) / 20_000 * 1e6


def attempts() -> list[str]:
    configure("dummy")

    @task
    def noop(n: int) -> int:
        return n

    now = datetime.now(UTC)
    record = TaskRecord(
        id=1, queue_name="q", task_name=noop.name, priority=0, args=[1], kwargs={}, context={},
        state=TaskResultStatus.RUNNING, run_after=now, expected_at=None, enqueued_at=now,
        started_at=now, last_attempted_at=now, finished_at=None, attempts=1, max_attempts=1,
        lost_count=0, claim_id=None, worker_pod=None, worker_pod_uid=None, worker_nonce=None,
        heartbeat_at=now, worker_ids=[], return_value=None, errors=[],
        trace_context={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"})
    call = attempt.prepare(record)
    enabled = tracing.ENABLED
    tracing.ENABLED = False
    absent = run_sync_us(call)
    tracing.ENABLED = enabled
    api_only = run_sync_us(call)
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    trace.set_tracer_provider(TracerProvider())
    time.sleep(tracing.RECHECK_SECONDS)
    sdk = run_sync_us(call)
    return [f"| run_sync of a trivial task, opentelemetry absent | {absent:.1f} us | |",
            f"| the same, opentelemetry API installed, no SDK configured | | {api_only:.1f} us |",
            f"| the same, SDK configured (spans recorded, no exporter) | | {sdk:.1f} us |"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=30)
    parser.add_argument("--output", type=Path)
    options = parser.parse_args()
    with LocalPostgres() as pg:
        migrate(pg.dsn)
        lines = statements(pg.dsn, options.blocks)
    lines += attempts()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    report = "\n".join(["| what | before | after |", "|---|---|---|", *lines,
                        f"\nload average at the end: {load}"])
    print(report)
    if options.output:
        options.output.write_text(report + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
