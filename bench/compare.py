"""kubetasks side by side with PgQueuer, Procrastinate and django-tasks-db, in one run.

One throwaway PostgreSQL (fsync off), a database per queue; interleaved rounds, medians of
``--rounds``. For each queue and setting: end-to-end no-op tasks/s at 1 and 2 worker processes
(tasks enqueued first, counted from the first task leaving the queue to the last one done), bulk
enqueue, one-at-a-time enqueue, and pickup latency on an idle queue (enqueue call to task start).
Installs nothing: ``pip install -r bench/requirements.txt`` first, then

    python -m bench.compare [--tasks 20000] [--rounds 3] [--baseline DIR]

``--baseline DIR`` adds kubetasks from another source tree (a ``src/`` with ``kubetasks`` in it,
e.g. ``git archive`` of an older commit) as a contender of its own, in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import psycopg  # noqa: E402
from localcluster.postgres import LocalPostgres, free_port  # noqa: E402

BIN = Path(sys.executable).parent

REMAINING = {
    "kubetasks": "SELECT count(*) FROM kubetasks_tasks WHERE state IN ('READY', 'RUNNING')",
    "pgqueuer": "SELECT count(*) FROM pgqueuer",
    "procrastinate": "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')",
    "django": "SELECT count(*) FROM django_tasks_database_dbtaskresult "
              "WHERE status IN ('READY', 'RUNNING')",
}
CHEAP_DRAIN = {
    "kubetasks": (
        "SELECT NOT (EXISTS (SELECT 1 FROM kubetasks_tasks WHERE state = 'READY') "
        "OR EXISTS (SELECT 1 FROM kubetasks_tasks WHERE state = 'RUNNING'))",
        "SELECT count(*), extract(epoch FROM max(finished_at) - min(started_at)) "
        "FROM kubetasks_tasks"),
}
"""Queues whose finished rows stay in their table: counting what is left there scans every row
(150 ms a poll at 60,000 rows, a core of this machine at one poll per 10 ms), so the drain polls
a cheap "anything left?" through the partial indexes and times the drain by the rows' own
start and finish times. (The others delete finished rows, or run too few tasks for a count
to cost.)"""

SLOW = {"procrastinate", "django"}
"""Queues that run one task at a time by default: their drains use ``--slow-tasks``."""

TABLES = {
    "kubetasks": "kubetasks_tasks, kubetasks_durations",
    "pgqueuer": "pgqueuer, pgqueuer_log, pgqueuer_statistics",
    "procrastinate": "procrastinate_jobs CASCADE",
    "django": "django_tasks_database_dbtaskresult",
}


@dataclass(frozen=True)
class Contender:
    """A queue with one setting of its worker."""

    label: str
    system: str
    worker_args: tuple[str, ...] = ()
    source: Path = REPO_ROOT / "src"
    """kubetasks' source tree (the baseline's differs)."""
    task: str = "noop"
    """kubetasks' no-op: ``noop`` (a plain function, run on a worker thread) or ``noop_async``
    (``async def``, run on the event loop, as PgQueuer's and Procrastinate's no-ops are)."""

    @property
    def database(self) -> str:
        return self.system + ("_baseline" if self.source != REPO_ROOT / "src" else "")

    def env(self, dsn: str, **extra: str) -> dict[str, str]:
        path = os.pathsep.join([str(self.source), str(REPO_ROOT)])
        return {**os.environ, "PYTHONPATH": path, "PGDSN": dsn, "KT_BENCH_DSN": dsn,
                "KT_BENCH_TASK": self.task,
                "DJANGO_SETTINGS_MODULE": "bench.compare_apps.django_settings", **extra}

    def worker_command(self, dsn: str) -> list[str]:
        python = sys.executable
        if self.system == "kubetasks":
            return [python, "-m", "kubetasks.cli", "--log-level", "WARNING", "--database-url",
                    dsn, "worker", "--import", "bench.compare_apps.kubetasks_tasks",
                    "--health-port", "0", *self.worker_args]
        if self.system == "pgqueuer":
            return [python, "-m", "bench.compare_apps.pgqueuer_app", *self.worker_args]
        if self.system == "procrastinate":
            return [python, "-m", "procrastinate", "--app",
                    "bench.compare_apps.procrastinate_app.app", "worker", *self.worker_args]
        return [python, "-m", "django", "db_worker", "--no-startup-delay", "--queue-name", "*",
                *self.worker_args]


@dataclass
class Samples:
    """Every measurement of one contender, by what was measured."""

    values: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    def median(self, key: str) -> float | None:
        found = self.values.get(key)
        return statistics.median(found) if found else None


def contenders(baseline: Path | None) -> list[Contender]:
    chosen = [
        Contender("kubetasks default", "kubetasks"),
        Contender("kubetasks default, `async def` task", "kubetasks", task="noop_async"),
        Contender("kubetasks `--concurrency 32`", "kubetasks", ("--concurrency", "32")),
        Contender("PgQueuer default (batch 10)", "pgqueuer"),
        Contender("PgQueuer `--batch-size 50`", "pgqueuer", ("--batch-size", "50")),
        Contender("Procrastinate default", "procrastinate"),
        Contender("django-tasks-db default", "django"),
    ]
    if baseline is not None:
        chosen[3:3] = [
            Contender("kubetasks before, default", "kubetasks", source=baseline / "src"),
            Contender("kubetasks before, `--concurrency 32`", "kubetasks", ("--concurrency", "32"),
                      source=baseline / "src"),
        ]
    return chosen


def side(contender: Contender, dsn: str, action: str, n: int = 0,
         udp_port: int = 0) -> dict[str, object]:
    """Run one action of ``bench.compare_systems`` for the contender; its JSON answer."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.compare_systems", contender.system, action, "--dsn", dsn,
         "--n", str(n), "--udp-port", str(udp_port)],
        cwd=REPO_ROOT, env=contender.env(dsn), capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"{contender.label} {action} failed:\n{done.stderr[-3000:]}")
    answer: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


@contextmanager
def workers(contender: Contender, dsn: str, count: int,
            **env: str) -> Iterator[list[tuple[subprocess.Popen[bytes], IO[bytes]]]]:
    # stderr to a file, not a pipe: a worker that logs each task would fill a pipe and block.
    logs = [tempfile.TemporaryFile() for _ in range(count)]  # noqa: SIM115 (closed below)
    processes = [subprocess.Popen(contender.worker_command(dsn), cwd=REPO_ROOT,
                                  env=contender.env(dsn, **env), stdout=subprocess.DEVNULL,
                                  stderr=log) for log in logs]
    try:
        yield list(zip(processes, logs, strict=True))
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for log in logs:
            log.close()


def reset(contender: Contender, dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {TABLES[contender.system]}")
        conn.execute("VACUUM ANALYZE")


def drain(contender: Contender, dsn: str, *, processes: int, tasks: int,
          samples: Samples) -> None:
    """Enqueue ``tasks`` (a bulk-enqueue sample), start the workers, time the drain."""
    reset(contender, dsn)
    bulk = side(contender, dsn, "bulk", tasks)["per_second"]
    if isinstance(bulk, float):
        samples.values["bulk"].append(bulk)
    with psycopg.connect(dsn, autocommit=True) as conn:
        # Planner statistics of the filled queue, as autovacuum soon has them: without them a
        # planner may sort the whole backlog on each claim (see RESULTS-compare.md).
        conn.execute("ANALYZE")
    remaining_sql = REMAINING[contender.system]
    with psycopg.connect(dsn, autocommit=True) as conn, \
            workers(contender, dsn, processes) as started:
        if contender.system in CHEAP_DRAIN:
            samples.values[f"e2e{processes}"].append(timed_by_rows(contender, conn, started))
            return
        deadline = time.monotonic() + 900
        first: tuple[float, int] | None = None
        while time.monotonic() < deadline:
            check_alive(contender, started)
            row = conn.execute(remaining_sql).fetchone()
            now = time.perf_counter()
            left = int(row[0]) if row else tasks
            if first is None and left < tasks:
                first = (now, left)
            if left == 0 and first is not None:
                samples.values[f"e2e{processes}"].append(first[1] / (now - first[0]))
                return
            time.sleep(0.01)
    raise RuntimeError(f"{contender.label}: {processes} processes did not drain {tasks} tasks")


def timed_by_rows(contender: Contender, conn: psycopg.Connection[Any],
                  started: list[tuple[subprocess.Popen[bytes], IO[bytes]]]) -> float:
    """Tasks/s from the first start to the last finish the rows record (see CHEAP_DRAIN)."""
    done_sql, span_sql = CHEAP_DRAIN[contender.system]
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        check_alive(contender, started)
        row = conn.execute(done_sql).fetchone()
        if row and row[0]:
            span = conn.execute(span_sql).fetchone()
            assert span is not None
            return int(span[0]) / float(span[1])
        time.sleep(0.01)
    raise RuntimeError(f"{contender.label}: the workers did not drain the queue")


def check_alive(contender: Contender,
                started: list[tuple[subprocess.Popen[bytes], IO[bytes]]]) -> None:
    for process, log in started:
        if process.poll() is not None:
            log.seek(0)
            error = log.read().decode(errors="replace")
            raise RuntimeError(f"{contender.label}: a worker exited:\n{error[-3000:]}")


def pickup(contender: Contender, dsn: str, *, count: int, samples: Samples) -> None:
    reset(contender, dsn)
    port = free_port()
    with workers(contender, dsn, 1, KT_BENCH_UDP_PORT=str(port)):
        time.sleep(3)  # started and idle
        delays = side(contender, dsn, "pickup", count, udp_port=port)["delays_ms"]
    assert isinstance(delays, list)
    samples.values["pickup"].extend(delays)


def run(options: argparse.Namespace, load_before: str,
        ) -> tuple[list[Contender], dict[str, Samples], str]:
    chosen = [c for c in contenders(options.baseline)
              if not options.only or c.system in options.only]
    results: dict[str, Samples] = {c.label: Samples() for c in chosen}
    with LocalPostgres() as server:
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            version = conn.info.server_version
            for database in {c.database for c in chosen}:
                conn.execute(f"CREATE DATABASE {database}")
        dsn = {c.label: server.dsn.rsplit("/", 1)[0] + "/" + c.database for c in chosen}
        for c in {c.database: c for c in chosen}.values():
            side(c, dsn[c.label], "setup")
        for round_number in range(options.rounds):
            for c in chosen:
                for processes in (1, 2):
                    tasks = options.slow_tasks if c.system in SLOW else options.tasks
                    drain(c, dsn[c.label], processes=processes, tasks=tasks,
                          samples=results[c.label])
                if c.worker_args:
                    continue  # enqueue and pickup do not depend on the worker's setting
                single = side(c, dsn[c.label], "single", options.single)["per_second"]
                assert isinstance(single, float)
                results[c.label].values["single"].append(single)
                pickup(c, dsn[c.label], count=options.pickups, samples=results[c.label])
                print(f"round {round_number + 1}: {c.label}: "
                      f"{ {k: round(v[-1]) for k, v in results[c.label].values.items()} }",
                      flush=True)
            # Written after every round: a run cut short still leaves what it measured.
            name = f"PostgreSQL {version // 10000}.{version % 10000}"
            options.output.write_text(report(chosen, results, server=name, options=options,
                                             load_before=load_before,
                                             rounds_done=round_number + 1))
    return chosen, results, name


def table(chosen: list[Contender], results: dict[str, Samples]) -> list[str]:
    lines = ["| queue, setting | tasks/s end to end, 1 process | 2 processes | "
             "bulk enqueue /s | one-at-a-time enqueue /s | pickup p50 ms | pickup p99 ms |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for c in chosen:
        s = results[c.label]
        delays = sorted(s.values.get("pickup", []))
        p50 = f"{statistics.median(delays):.1f}" if delays else ""
        p99 = f"{delays[min(len(delays) - 1, int(len(delays) * 0.99))]:.1f}" if delays else ""
        lines.append(f"| {c.label} | {_n(s.median('e2e1'))} | {_n(s.median('e2e2'))} | "
                     f"{_n(s.median('bulk'))} | {_n(s.median('single'))} | {p50} | {p99} |")
    return lines


def _n(value: float | None) -> str:
    return "" if value is None else f"{value:,.0f}"


def report(chosen: list[Contender], results: dict[str, Samples], *, server: str,
           options: argparse.Namespace, load_before: str, rounds_done: int) -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
               "unknown CPU")
    return "\n".join([
        "# kubetasks side by side with PgQueuer, Procrastinate and django-tasks-db", "",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- machine: {os.cpu_count()} cores ({cpu}); load average {load_before} before the run, "
        f"{_load()} after it (the machine was shared: compare the rows of this run with each "
        "other, not with other runs)",
        f"- Python {platform.python_version()}, {server} on the same machine (fsync off, "
        "synchronous_commit off)",
        f"- {options.tasks:,} no-op tasks per drain ({options.slow_tasks:,} for Procrastinate and "
        f"django-tasks-db), {options.single:,} one-at-a-time enqueues, "
        f"{options.pickups} pickups per round; {rounds_done} of {options.rounds} interleaved "
        "rounds done, medians "
        "(pickup percentiles over all rounds' samples)",
        "- reproduce: `pip install -r bench/requirements.txt`, then "
        f"`{' '.join(['python -m bench.compare', *sys.argv[1:]])}`",
        "", *table(chosen, results), "",
    ]) + "\n"


def _load() -> str:
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--slow-tasks", type=int, default=2_000,
                        help="tasks per drain for Procrastinate and django-tasks-db, which run "
                             "one task at a time (a rate is a rate; this keeps the run short)")
    parser.add_argument("--single", type=int, default=1_000)
    parser.add_argument("--pickups", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline", type=Path)
    parser.add_argument("--only", nargs="*", choices=sorted(REMAINING), default=[])
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "bench" / "RESULTS-compare.md")
    options = parser.parse_args()
    load_before = _load()
    run(options, load_before)
    print(options.output.read_text())


if __name__ == "__main__":
    main()
