"""Tasks whose outcomes cannot be written as they are, for the worker tests."""

from __future__ import annotations

from kubetasks import Retry, task
from tests.integration.worker_tasks import QUEUE


@task(queue_name=QUEUE, max_attempts=3)
def retries_never() -> None:
    raise Retry("again, never", delay=float("inf"))


@task(queue_name=QUEUE, max_attempts=3, retry_backoff={1: 1e12})
def retries_in_ages() -> None:
    raise ValueError("again, in 31,000 years")


@task(queue_name=QUEUE, max_attempts=3, retry_backoff={1: 0.2})
def fails_once(path: str) -> str:
    from pathlib import Path

    with Path(path).open("a") as file:
        file.write("attempt\n")
    if len(Path(path).read_text().splitlines()) == 1:
        raise ValueError("first time unlucky")
    return "second time lucky"
