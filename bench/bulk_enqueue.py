"""Bulk enqueue alone: kubetasks' ``enqueue_many`` against PgQueuer's list ``enqueue``, many rounds.

``bench.compare`` takes one bulk sample per drain, three rounds in all, so its bulk column moves
with the machine by more than the gaps between the queues. This runs only the bulk enqueue, in
alternating order, ``--rounds`` times per contender, each into an emptied table (``TRUNCATE``,
``VACUUM ANALYZE``, as ``bench.compare`` does before a drain), in a fresh process through
``bench.compare_systems``. With ``--baseline DIR`` (a kubetasks ``src`` tree) it runs that tree
too.

    python -m bench.bulk_enqueue [--tasks 20000,50000] [--rounds 8] [--baseline DIR]
    # results: bench/RESULTS-bulk-enqueue.md
"""

from __future__ import annotations

import argparse
import statistics
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from localcluster.postgres import LocalPostgres

from bench.compare import Contender, _load, reset, side

RESULTS = Path(__file__).with_name("RESULTS-bulk-enqueue.md")


def measure(chosen: list[Contender], tasks: int, rounds: int) -> dict[str, list[float]]:
    """Tasks per second of each contender's bulk enqueue, ``rounds`` times each."""
    per_second: dict[str, list[float]] = {c.label: [] for c in chosen}
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
                rate = side(c, dsn[c.label], "bulk", tasks)["per_second"]
                assert isinstance(rate, float)
                per_second[c.label].append(rate)
    return per_second


def table(results: dict[int, dict[str, list[float]]]) -> str:
    lines = ["| tasks per call | queue | median /s | best /s | slowest /s | ÷ PgQueuer, median "
             "| ÷ PgQueuer, best |", "|---:|---|---:|---:|---:|---:|---:|"]
    for tasks, per_second in results.items():
        pgqueuer = per_second["PgQueuer"]
        for label, rates in per_second.items():
            lines.append(
                f"| {tasks:,} | {label} | {statistics.median(rates):,.0f} | {max(rates):,.0f} | "
                f"{min(rates):,.0f} | {statistics.median(rates) / statistics.median(pgqueuer):.2f} "
                f"| {max(rates) / max(pgqueuer):.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", default="20000,50000", help="tasks per call, comma-separated")
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
    results = {tasks: measure(chosen, tasks, options.rounds)
               for tasks in map(int, options.tasks.split(","))}
    text = "\n".join([
        "# Bulk enqueue alone: kubetasks against PgQueuer 1.6", "",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; load average {load_before} before, "
        f"{_load()} after (compare rows of one run, not runs)",
        f"- {options.rounds} alternating rounds per contender, each into an emptied table, in a "
        "fresh process; kubetasks `noop.enqueue_many([() for _ in range(n)])`, PgQueuer "
        "`Queries.enqueue([\"noop\"] * n, [None] * n, [0] * n)`",
        f"- reproduce: `python -m bench.bulk_enqueue --tasks {options.tasks} --rounds "
        f"{options.rounds}" + (f" --baseline {options.baseline}`" if options.baseline else "`"),
        "", table(results), ""])
    options.output.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
