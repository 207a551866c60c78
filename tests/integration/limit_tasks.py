"""Tasks of the queue-limit tests (imported by the tests and by worker processes): each appends
when its function started and ended, so the tests can check overlaps and rates after the fact."""

from __future__ import annotations

import time
from pathlib import Path

from kubetasks import task

QUEUE = "limited"


@task(queue_name=QUEUE)
def timed(path: str, seconds: float) -> None:
    started = time.time()
    time.sleep(seconds)
    with Path(path).open("a", encoding="utf-8") as file:
        file.write(f"{started!r} {time.time()!r}\n")


def spans(path: str) -> list[tuple[float, float]]:
    """(start, end) of every run, in start order."""
    lines = Path(path).read_text(encoding="utf-8").split("\n")
    return sorted((float(a), float(b)) for a, b in (line.split() for line in lines if line))


def most_at_once(runs: list[tuple[float, float]]) -> int:
    """The largest number of runs in progress at one moment."""
    edges = sorted([(start, 1) for start, _ in runs] + [(end, -1) for _, end in runs],
                   key=lambda edge: (edge[0], edge[1]))
    now = peak = 0
    for _, step in edges:
        now += step
        peak = max(peak, now)
    return peak
