"""Tasks of the observability tests: one that succeeds, one that fails with a secret in its
message, one that holds its slot until told to return."""

from __future__ import annotations

import time
from pathlib import Path

from kubetasks import task

QUEUE = "observed"
LEAKED_URL = "postgresql://app:hunter2-in-a-task@db.internal/app"


@task(queue_name=QUEUE)
def double(n: int) -> int:
    return 2 * n


@task(queue_name=QUEUE, max_attempts=2, retry_backoff={1: 0.1})
def leaks_a_url() -> None:
    raise ConnectionError(f"cannot reach {LEAKED_URL}")


@task(queue_name=QUEUE)
def holds_until(path: str) -> str:
    """Keeps its slot until ``path`` exists (at most a minute)."""
    deadline = time.monotonic() + 60
    while not Path(path).exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return "released"
