"""What ``kubetasks prune`` and ``kubetasks requeue`` cost on a large table, by batch size.

Both commands change rows in batches (``kubetasks.commands.maintenance.BATCH``), so that no
statement holds its locks for long and the progress bar moves. This measures the price of that:
the real commands (``kubetasks.cli.main``, output to /dev/null) on a throwaway PostgreSQL
(fsync off), deleting N finished tasks and putting back N RUNNING tasks with a stale
heartbeat, at several batch sizes; plus the command's start-up time (``kubetasks --version`` in a
fresh interpreter).

    python -m bench.cli_batches [--sizes 10000,100000] [--batches 500,5000]
    # results: bench/RESULTS-cli.md
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
from localcluster.postgres import LocalPostgres

from kubetasks.cli import main as kubetasks
from kubetasks.commands import maintenance
from kubetasks.migrations import migrate

RESULTS = Path(__file__).with_name("RESULTS-cli.md")
TASK = "bench.task"


def fill(dsn: str, count: int, *, running: bool) -> None:
    """``count`` tasks finished 40 days ago, or RUNNING with a heartbeat 10 minutes old."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE kubetasks_tasks")
        if running:
            conn.execute(
                "INSERT INTO kubetasks_tasks (queue_name, task_name, state, claim_id, attempts,"
                " worker_pod, worker_nonce, heartbeat_at, started_at, last_attempted_at)"
                " SELECT 'bench', %s, 'RUNNING', gen_random_uuid(), 1, 'pod', 'n',"
                " now() - interval '10 minutes', now(), now() FROM generate_series(1, %s)",
                [TASK, count])
        else:
            conn.execute(
                "INSERT INTO kubetasks_tasks (queue_name, task_name, state, finished_at)"
                " SELECT 'bench', %s, 'SUCCESSFUL', now() - interval '40 days'"
                " FROM generate_series(1, %s)", [TASK, count])
        conn.execute("VACUUM ANALYZE kubetasks_tasks")


def timed(dsn: str, *argv: str) -> float:
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        code = kubetasks(["--database-url", dsn, *argv])
    assert code == 0, argv
    return time.perf_counter() - started


def startup_seconds(rounds: int = 5) -> float:
    """The fastest of a few ``kubetasks --version`` runs: importing click and the commands."""
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "kubetasks.cli", "--version"], check=True,
                       capture_output=True)
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--batches", default="500,5000")
    args = parser.parse_args()
    lines = ["| command | rows | batch | seconds | rows/s |", "|---|---:|---:|---:|---:|"]
    with LocalPostgres() as postgres:
        migrate(postgres.dsn)
        for size in map(int, args.sizes.split(",")):
            for batch in map(int, args.batches.split(",")):
                maintenance.BATCH = batch
                fill(postgres.dsn, size, running=False)
                seconds = timed(postgres.dsn, "prune", "--successful", "7d")
                lines.append(f"| prune | {size} | {batch} | {seconds:.2f} | {size / seconds:,.0f} |")
                fill(postgres.dsn, size, running=True)
                seconds = timed(postgres.dsn, "requeue", "--stale", "5m")
                lines.append(f"| requeue | {size} | {batch} | {seconds:.2f} | {size / seconds:,.0f} |")
                print(*lines[-2:], sep="\n", flush=True)
    start = startup_seconds()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    text = (f"# kubetasks prune and requeue, by batch size\n\n`python -m bench.cli_batches`, "
            f"load average {load} (2 cores shared with other work).\n\n" + "\n".join(lines) +
            f"\n\n`kubetasks --version` in a fresh interpreter: {start * 1000:.0f} ms (best of 5).\n")
    RESULTS.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
