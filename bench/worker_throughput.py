"""How fast ``kubetasks worker`` drains a queue, and how soon it starts a new task.

Starts its own throwaway PostgreSQL, then measures with real worker processes:

- throughput: no-op tasks per second, enqueued up front, drained by 1, 2 and 4 processes;
- pickup latency: tasks enqueued one at a time to an idle worker, from just before the enqueue
  call to the start of the task function, with LISTEN/NOTIFY and with polling only.

    python bench/worker_throughput.py [--tasks 20000] [--samples 200] [--output bench/RESULTS.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # bench.worker_tasks and localcluster, run as a script

import psycopg  # noqa: E402
from localcluster.postgres import LocalPostgres, free_port  # noqa: E402

from bench import worker_tasks  # noqa: E402
from kubetasks.backends import PostgresBackend  # noqa: E402
from kubetasks.migrations import migrate  # noqa: E402
from kubetasks.store import Store  # noqa: E402


@dataclass(frozen=True)
class Throughput:
    processes: int
    concurrency: int
    task: str
    log_level: str
    tasks: int
    per_second: float


@dataclass(frozen=True)
class Latency:
    mode: str
    samples: int
    p50_ms: float
    p99_ms: float
    max_ms: float


@contextmanager
def workers(dsn: str, count: int, *args: str, log_level: str = "WARNING",
            ) -> Iterator[list[int]]:
    """``count`` worker processes; yields their health ports once all are ready."""
    ports = [free_port() for _ in range(count)]
    processes = [subprocess.Popen(
        [sys.executable, "-m", "kubetasks.cli", "--log-level", log_level, "--database-url", dsn,
         "worker", "--import", "bench.worker_tasks", "--health-host", "127.0.0.1",
         "--health-port", str(port), *args],
        cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    ) for port in ports]
    try:
        for port in ports:
            wait_ready(port)
        yield ports
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(30)


def wait_ready(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"worker on port {port} did not become ready")


def reset(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE kubetasks_tasks, kubetasks_durations")
        conn.execute("VACUUM ANALYZE kubetasks_tasks")


def measure_throughput(dsn: str, backend: PostgresBackend, *, processes: int, concurrency: int,
                       tasks: int, asynchronous: bool = False,
                       log_level: str = "WARNING") -> Throughput:
    """Enqueue first, then time the drain from the first start to the last finish."""
    reset(dsn)
    task = (worker_tasks.noop_async if asynchronous else worker_tasks.noop).using(backend=backend)
    for start in range(0, tasks, 5000):
        task.enqueue_many([() for _ in range(start, min(tasks, start + 5000))])
    with workers(dsn, processes, "--concurrency", str(concurrency), log_level=log_level), \
            psycopg.connect(dsn, autocommit=True) as conn:
        while True:
            row = conn.execute("SELECT count(*) FROM kubetasks_tasks WHERE state = 'SUCCESSFUL'"
                               ).fetchone()
            if row and row[0] == tasks:
                break
            time.sleep(0.1)
        row = conn.execute("SELECT extract(epoch FROM max(finished_at) - min(started_at)) "
                           "FROM kubetasks_tasks").fetchone()
    assert row is not None
    return Throughput(processes, concurrency, "async no-op" if asynchronous else "sync no-op",
                      log_level, tasks, tasks / float(row[0]))


def measure_latency(dsn: str, backend: PostgresBackend, store: Store, *, samples: int,
                    args: tuple[str, ...], mode: str, spread: float) -> Latency:
    """``spread``: the pause between samples is drawn up to this, so that enqueues fall
    anywhere in a polling worker's sleep rather than in step with it."""
    reset(dsn)
    task = worker_tasks.started_at.using(backend=backend)
    delays = []
    with workers(dsn, 1, *args):
        time.sleep(0.5)  # idle: the worker sleeps until woken or polled
        for _ in range(samples):
            before = time.time()
            result = task.enqueue()
            while (record := store.get(result.id)).state != "SUCCESSFUL":
                time.sleep(0.001)
            delays.append((record.return_value - before) * 1000)
            time.sleep(random.uniform(0.005, spread))
    delays.sort()
    return Latency(mode, samples, statistics.median(delays),
                   delays[min(len(delays) - 1, int(len(delays) * 0.99))], delays[-1])


def report(throughputs: list[Throughput], latencies: list[Latency], *, server: str,
           command: str) -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
               platform.processor() or "unknown CPU")
    lines = [
        "# Worker benchmark", "",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- machine: {_cores()} cores ({cpu}), {platform.system()} {platform.release()}; "
        f"load average {_load()} when the run ended (the machine was shared)",
        f"- Python {platform.python_version()}, {server}, on the same machine as the workers "
        "(fsync off, synchronous_commit off: a throwaway server)",
        f"- reproduce: `{command}`", "",
        "## Throughput (tasks enqueued first, timed from first start to last finish)", "",
        "| processes | concurrency | task | log level | tasks | tasks/s |",
        "|---:|---:|---|---|---:|---:|",
        *(f"| {t.processes} | {t.concurrency} | {t.task} | {t.log_level} | {t.tasks} | "
          f"{t.per_second:,.0f} |" for t in throughputs),
        "", "## Pickup latency (idle worker, from the enqueue call to the task's start)", "",
        "| mode | samples | p50 ms | p99 ms | max ms |", "|---|---:|---:|---:|---:|",
        *(f"| {r.mode} | {r.samples} | {r.p50_ms:.1f} | {r.p99_ms:.1f} | {r.max_ms:.1f} |"
          for r in latencies),
        "", "## Reading these numbers", "",
        "- A worker claims up to its free slots in one statement and writes the results of all",
        "  tasks that finished meanwhile in another, so with no-op tasks the concurrency is the",
        "  batch size: round trips, not Python, bound one process at low concurrency.",
        "- The workers, PostgreSQL and this script share the machine's cores: past two",
        "  processes on two cores, the machine is the limit, not the number of workers.",
        "- At INFO the worker logs one JSON line per finished task (here to /dev/null); the",
        "  INFO row shows what that costs.",
        "- Latency is measured with the wall clock, from just before the enqueue call (which",
        "  includes its own round trip) to the first line of the task function. Polling finds a",
        "  task after half an interval on average and a whole one at worst.",
    ]
    return "\n".join(lines) + "\n"


def _cores() -> int:
    return os.cpu_count() or 0


def _load() -> str:
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "bench" / "RESULTS.md")
    options = parser.parse_args()
    with LocalPostgres() as server:
        migrate(server.dsn)
        store = Store(server.dsn)
        backend = PostgresBackend(store)
        version = store.connect().info.server_version
        throughputs = []
        for processes, concurrency, asynchronous, log_level in [
            (1, 8, False, "WARNING"), (1, 32, False, "WARNING"), (1, 32, True, "WARNING"),
            (1, 32, False, "INFO"), (2, 32, False, "WARNING"), (4, 32, False, "WARNING"),
        ]:
            result = measure_throughput(server.dsn, backend, processes=processes,
                                        concurrency=concurrency, tasks=options.tasks,
                                        asynchronous=asynchronous, log_level=log_level)
            print(result, flush=True)
            throughputs.append(result)
        latencies = []
        for mode, args, samples, spread in [
            ("LISTEN/NOTIFY (default)", (), options.samples, 0.03),
            ("--no-listen, --poll-interval 1 (its default)", ("--no-listen",),
             options.samples // 4, 1.0),
            ("--no-listen, --poll-interval 0.1", ("--no-listen", "--poll-interval", "0.1"),
             options.samples // 2, 0.1),
        ]:
            latency = measure_latency(server.dsn, backend, store, samples=samples, args=args,
                                      mode=mode, spread=spread)
            print(latency, flush=True)
            latencies.append(latency)
        store.close()
    command = "python bench/worker_throughput.py " + " ".join(sys.argv[1:])
    server_name = f"PostgreSQL {version // 10000}.{version % 10000}"
    options.output.write_text(report(throughputs, latencies, server=server_name,
                                     command=command.strip()))
    print(f"wrote {options.output}")


if __name__ == "__main__":
    main()
