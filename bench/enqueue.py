"""Enqueue alone: kubetasks against PgQueuer, in bulk and one call at a time, many rounds.

``bench.compare`` takes one bulk sample per drain and one run of one-at-a-time enqueues per
round, three rounds in all, so its enqueue columns move with the machine by more than the gaps
between the queues. This runs only the enqueues, in alternating order, ``--rounds`` times per
contender, each into an emptied table (``TRUNCATE``, ``VACUUM ANALYZE``, as ``bench.compare``
does before a drain), in a fresh process through ``bench.compare_systems``. Beside the rate it
records the client's CPU per call, which the server's share of a noisy machine moves less.
With ``--baseline DIR`` (a kubetasks ``src`` tree) it runs that tree too.

    python -m bench.enqueue [--tasks 20000,50000] [--single 2000] [--rounds 8] [--baseline DIR]
    # results: bench/RESULTS-enqueue.md
"""

from __future__ import annotations

import argparse
import statistics
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import psycopg
from localcluster.postgres import LocalPostgres

from bench.compare import Contender, _load, reset, side

RESULTS = Path(__file__).with_name("RESULTS-enqueue.md")

Samples = dict[str, list[dict[str, float]]]
"""Each contender's answers from ``bench.compare_systems``: ``per_second`` and ``cpu_us``."""


def measure(chosen: list[Contender], action: str, n: int, rounds: int) -> Samples:
    """``rounds`` runs of ``action`` (``bulk``: one call of ``n`` tasks; ``single``: ``n``
    calls of one task) per contender, alternating the order."""
    samples: Samples = {c.label: [] for c in chosen}
    with LocalPostgres() as server:
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            for c in chosen:
                conn.execute(f"CREATE DATABASE {c.database}")
        dsn = {c.label: server.dsn.rsplit("/", 1)[0] + "/" + c.database for c in chosen}
        for c in chosen:
            side(c, dsn[c.label], "setup")
        for number in range(rounds):
            for c in chosen if number % 2 == 0 else chosen[::-1]:
                reset(c, dsn[c.label])
                answer = side(c, dsn[c.label], action, n)
                samples[c.label].append({key: cast(float, answer[key])
                                         for key in ("per_second", "cpu_us")})
    return samples


def table(first_column: str, results: dict[str, Samples]) -> str:
    lines = [f"| {first_column} | queue | median /s | best /s | slowest /s | ÷ PgQueuer, median "
             "| ÷ PgQueuer, best | client CPU µs per task, median |",
             "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for row, samples in results.items():
        pgqueuer = [s["per_second"] for s in samples["PgQueuer"]]
        for label, answers in samples.items():
            rates = [s["per_second"] for s in answers]
            cpu = statistics.median(s["cpu_us"] for s in answers)
            lines.append(
                f"| {row} | {label} | {statistics.median(rates):,.0f} | {max(rates):,.0f} | "
                f"{min(rates):,.0f} | {statistics.median(rates) / statistics.median(pgqueuer):.2f} "
                f"| {max(rates) / max(pgqueuer):.2f} | {cpu:,.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", default="20000,50000",
                        help="tasks per bulk call, comma-separated (empty: no bulk)")
    parser.add_argument("--single", type=int, default=2_000,
                        help="one-task calls per round (0: none)")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--baseline", type=Path, help="another kubetasks src tree to run too")
    parser.add_argument("--output", type=Path, default=RESULTS)
    options = parser.parse_args()
    chosen = [Contender("kubetasks", "kubetasks")]
    if options.baseline:
        chosen.append(Contender(f"kubetasks before ({options.baseline})", "kubetasks",
                                source=options.baseline))
    chosen.append(Contender("PgQueuer", "pgqueuer"))
    load_before = _load()
    bulk = {f"{tasks:,}": measure(chosen, "bulk", tasks, options.rounds)
            for tasks in map(int, filter(None, options.tasks.split(",")))}
    single = ({"1": measure(chosen, "single", options.single, options.rounds)}
              if options.single else {})
    reproduce = (f"python -m bench.enqueue --tasks {options.tasks} --single {options.single} "
                 f"--rounds {options.rounds}"
                 + (f" --baseline {options.baseline}" if options.baseline else ""))
    text = "\n".join([
        "# Enqueue alone: kubetasks against PgQueuer 1.6", "",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; load average {load_before} before, "
        f"{_load()} after (compare rows of one run, not runs)",
        f"- {options.rounds} alternating rounds per contender, each into an emptied table, in a "
        "fresh process. Bulk: kubetasks `noop.enqueue_many([() for _ in range(n)])`, PgQueuer "
        "`Queries.enqueue([\"noop\"] * n, [None] * n, [0] * n)`. One at a time: "
        f"{options.single:,} calls of kubetasks `noop.enqueue()` (a `TaskResult` each), "
        "PgQueuer `Queries.enqueue(\"noop\", None)` (the ids)",
        "- client CPU: the enqueuing process's, every thread's, per task",
        f"- reproduce: `{reproduce}`",
        "", "## Bulk", "", table("tasks per call", bulk) if bulk else "(not run)",
        "", "## One at a time", "", table("tasks per call", single) if single else "(not run)",
        ""])
    options.output.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
