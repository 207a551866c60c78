"""Enqueue ``make_thumbnail`` tasks through the client library, as an application pod would.

    python -m app.enqueue 500                      # in the example app image
    python -m app.enqueue 500 --expected-in 60 --wait
    python -m examples.app.enqueue 10              # from a checkout

The database comes from ``KUBETASKS_DATABASE_URL`` (or libpq's ``PG*`` variables). It prints
the ids of the tasks, one a line, then how many it enqueued. With ``--wait`` it then waits until
every task has finished, and exits 0 only if all of them succeeded.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import deque
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from kubetasks import TaskResult, TaskResultStatus
from kubetasks.config import Settings, get_backend

from .tasks import make_thumbnail


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m app.enqueue", description=__doc__.split("\n\n")[0])
    parser.add_argument("count", type=int, help="how many make_thumbnail tasks to enqueue")
    parser.add_argument("--expected-in", type=float, metavar="SECONDS",
                        help="deadline: each task is expected to have finished SECONDS from now")
    parser.add_argument("--wait", action="store_true",
                        help="wait until all have finished; exit 1 unless all succeeded")
    parser.add_argument("--timeout", type=float, default=600, metavar="SECONDS",
                        help="with --wait, give up after SECONDS (default 600)")
    parser.add_argument("--quiet", action="store_true", help="print only the count, not the ids")
    return parser.parse_args(argv)


def enqueue(count: int, expected_in: float | None) -> list[TaskResult[Any]]:
    """``count`` thumbnails in one round trip, with a deadline if ``expected_in`` is given."""
    task = make_thumbnail
    if expected_in is not None:
        task = task.using(expected_at=timedelta(seconds=expected_in))
    return task.enqueue_many([(image_id,) for image_id in range(count)])


def wait(results: Sequence[TaskResult[Any]], timeout: float) -> dict[TaskResultStatus, int]:
    """Wait until every task has finished, reading each one until it has (oldest first, so
    that a pass stops at the first one still running). Returns the count per final status;
    the tasks still unfinished at the timeout count under their current status."""
    pending = deque(results)
    finished: dict[TaskResultStatus, int] = {}
    deadline = time.monotonic() + timeout
    last_report = time.monotonic()
    while pending and time.monotonic() < deadline:
        pending[0].refresh()
        if pending[0].is_finished:
            status = pending.popleft().status
            finished[status] = finished.get(status, 0) + 1
            continue
        if time.monotonic() - last_report >= 5:
            print(f"finished {len(results) - len(pending)}/{len(results)}", flush=True)
            last_report = time.monotonic()
        time.sleep(0.5)
    for result in pending:
        result.refresh()
        finished[result.status] = finished.get(result.status, 0) + 1
    return finished


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if Settings.from_env().backend != "postgres":
        print("app.enqueue: set KUBETASKS_DATABASE_URL (or PGHOST/PGDATABASE) to the queue's database",
              file=sys.stderr)
        return 2
    try:
        return enqueue_and_report(args)
    finally:
        get_backend().close()


def enqueue_and_report(args: argparse.Namespace) -> int:
    started = time.monotonic()
    results = enqueue(args.count, args.expected_in)
    if not args.quiet:
        print("\n".join(result.id for result in results))
    deadline = f", expected within {args.expected_in:g} s" if args.expected_in is not None else ""
    print(f"enqueued {len(results)} make_thumbnail tasks{deadline}", flush=True)
    if not args.wait:
        return 0
    counts = wait(results, args.timeout)
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    unfinished = sum(n for status, n in counts.items() if not status.is_finished)
    outcome = f"gave up with {unfinished} unfinished" if unfinished else f"all {len(results)} finished"
    print(f"{outcome} after {time.monotonic() - started:.1f} s: {summary}")
    return 0 if counts.get(TaskResultStatus.SUCCESSFUL, 0) == len(results) else 1

if __name__ == "__main__":
    sys.exit(main())
