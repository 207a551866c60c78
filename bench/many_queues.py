"""One operator serving many TaskQueues on one database: statistics statements and database time
per poll, with each queue read alone against the readings shared by ``StatisticsPoller``.

Starts its own throwaway PostgreSQL (fsync off) with ``--queues`` queues of 1,000 READY tasks
each (a fifth with deadlines, two RUNNING) beside 1,000,000 finished rows, and runs one real
``QueueController`` per queue, the Kubernetes side answered in memory. A poll is every queue's
daemon stepping once, at its own phase within the poll interval (a clock the benchmark moves).
"alone" is each step reading its own queue (``Store.queue_statistics``), "shared" the operator's
way; the two alternate, round by round, so that they see the same machine.

    python -m bench.many_queues [--queues 100] [--rounds 20]   # bench/RESULTS-many-queues.md
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from datetime import UTC, datetime

import psycopg
from localcluster.postgres import LocalPostgres

from bench.queue_statistics import NAMES, MemoryKube, TimedStore, percentile
from kubetasks.migrations import migrate
from kubetasks_operator.controller import QueueController
from kubetasks_operator.poller import StatisticsPoller
from kubetasks_operator.spec import parse_spec

RESULTS = os.path.join(os.path.dirname(__file__), "RESULTS-many-queues.md")
POLL = 2.0


def fill(dsn: str, queues: int) -> None:
    migrate(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO kubetasks_tasks (queue_name, task_name, expected_at) "
            "SELECT 'queue-' || (i %% %s), (%s::text[])[1 + (i / %s) %% 5], "
            "       CASE WHEN (i / %s) %% 5 = 0 THEN now() + (i %% 3600) * interval '1 second' END "
            "FROM generate_series(1, %s) AS i", (queues, list(NAMES), queues, queues, 1000 * queues))
        conn.execute(
            "INSERT INTO kubetasks_tasks (queue_name, task_name, state, finished_at, attempts) "
            "SELECT 'queue-' || (i %% %s), 'resize', 'SUCCESSFUL', now() - interval '1 hour', 1 "
            "FROM generate_series(1, 1000000) AS i", (queues,))
        conn.execute(
            "UPDATE kubetasks_tasks SET state = 'RUNNING', claim_id = gen_random_uuid(), "
            "attempts = 1, worker_pod = 'w-0', worker_pod_uid = 'uid-0', heartbeat_at = now(), "
            "last_attempted_at = now() - interval '30 seconds' WHERE id IN ("
            "  SELECT id FROM (SELECT id, row_number() OVER (PARTITION BY queue_name ORDER BY id) AS n"
            "                  FROM kubetasks_tasks WHERE state = 'READY') AS r WHERE n <= 2)")
        conn.execute("INSERT INTO kubetasks_durations (task_name, mean_seconds, samples) "
                     "VALUES ('resize', 1.5, 100), ('transcode', 40, 100), ('ocr', 8, 100)")
        conn.execute("VACUUM ANALYZE kubetasks_tasks")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def controllers(store: TimedStore, queues: int, poller: StatisticsPoller | None
                ) -> list[QueueController]:
    made = []
    for number in range(queues):
        name = f"queue-{number}"
        spec = parse_spec({"worker": {"image": "app:1"}, "queueName": name,
                           "database": {"secretRef": {"name": "db"}},
                           "scaling": {"maxReplicas": 10, "pollIntervalSeconds": POLL}})
        made.append(QueueController(kube=MemoryKube(), store=store, namespace="default", name=name,
                                    queue_name=name, spec=spec, post_event=lambda *_: None,
                                    statistics=poller, statistics_max_age=POLL))
    return made


def one_poll(made: list[QueueController], clock: Clock, tick: int) -> None:
    for number, controller in enumerate(made):
        clock.now = tick * POLL + number * POLL / len(made)
        controller.step(datetime.now(UTC), {"uid-0": "w-0"})


def statistics_time(store: TimedStore) -> tuple[int, float]:
    names = ("queue_statistics",)
    return (sum(len(store.timings[n]) for n in names),
            sum(sum(store.timings[n]) for n in names))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queues", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    results: dict[str, dict[str, list[float]]] = {
        way: {"statements": [], "database": [], "wall": []} for way in ("alone", "shared")}
    with LocalPostgres() as postgres:
        fill(postgres.dsn, args.queues)
        stores = {way: TimedStore(postgres.dsn) for way in results}
        clock = Clock()
        poller = StatisticsPoller(stores["shared"], clock=clock)
        made = {"alone": controllers(stores["alone"], args.queues, None),
                "shared": controllers(stores["shared"], args.queues, poller)}
        try:
            for way in results:  # a first poll each: settings written, every queue asked once
                one_poll(made[way], clock, 0)
            for tick in range(1, args.rounds + 1):
                for way in (("alone", "shared") if tick % 2 else ("shared", "alone")):
                    stores[way].timings.clear()
                    started = time.perf_counter()
                    one_poll(made[way], clock, tick)
                    wall = time.perf_counter() - started
                    count, seconds = statistics_time(stores[way])
                    results[way]["statements"].append(count)
                    results[way]["database"].append(seconds)
                    results[way]["wall"].append(wall)
        finally:
            for store in stores.values():
                store.close()
    lines = ["| statistics read | statements per poll | statistics database ms per poll, p50 / p99 "
             "| all steps of a poll, ms p50 / p99 |", "|---|---:|---:|---:|"]
    for way, label in (("alone", "each queue alone"), ("shared", "shared (StatisticsPoller)")):
        got = results[way]
        lines.append(
            f"| {label} | {statistics.median(got['statements']):.0f} | "
            f"{1000 * statistics.median(got['database']):.1f} / "
            f"{1000 * percentile(got['database'], 0.99):.1f} | "
            f"{1000 * statistics.median(got['wall']):.1f} / {1000 * percentile(got['wall'], 0.99):.1f} |")
        print(lines[-1], flush=True)
    ratio = statistics.median(results["alone"]["database"]) / statistics.median(
        results["shared"]["database"])
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    with open(RESULTS, "w") as out:
        out.write(
            f"# One operator, {args.queues} TaskQueues on one database: statistics per poll\n\n"
            f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {os.cpu_count()} cores; "
            f"load average {load}\n"
            f"- reproduce: `python -m bench.many_queues --queues {args.queues} "
            f"--rounds {args.rounds}`\n"
            f"- {args.queues} queues of 1,000 READY tasks (two RUNNING each) beside 1,000,000 "
            f"finished rows; median and p99 of {args.rounds} polls each way, alternating\n\n"
            + "\n".join(lines)
            + f"\n\nShared readings cost {ratio:.1f}x less statistics database time per poll.\n")


if __name__ == "__main__":
    main()
