"""A small application's tasks: what a team would put in ``app/tasks.py``."""

from __future__ import annotations

import os
import time

import psycopg

from kubetasks import TaskContext, task


@task(queue_name="media", max_attempts=3, retry_backoff={1: 1, 3: 5})
def make_thumbnail(image_id: int, *, size: int = 256) -> dict[str, object]:
    """Pretend to resize an image (50 ms of work)."""
    time.sleep(0.05)
    return {"image": image_id, "size": size, "pod": os.environ.get("POD_NAME", "local")}


@task(queue_name="media", takes_context=True)
def send_digest(context: TaskContext, user_ids: list[int]) -> str:
    """Send a digest to a batch of users, for the tenant that enqueued it."""
    time.sleep(0.2)
    return f"digest for {len(user_ids)} users of {context.context.get('tenant', '?')}"


@task(queue_name="media", timeout=600)
def render_report(seconds: float) -> str:
    """A long report: holds its worker for ``seconds``, returns the pod that rendered it."""
    time.sleep(seconds)
    return os.environ.get("POD_NAME", "local")


@task(queue_name="media", max_attempts=1)
def load_dataset(megabytes: int) -> int:
    """Load a data set into memory: more than the worker's memory limit gets it OOM-killed."""
    chunks = [bytearray(1024 * 1024) for _ in range(megabytes)]
    for chunk in chunks:  # touch every page, so the memory is really used
        chunk[::4096] = b"\x01" * len(chunk[::4096])
    return len(chunks)


@task(queue_name="media", takes_context=True, max_attempts=5)
def record_view(context: TaskContext, page: int) -> None:
    """Record a page view in the application's own table ``page_views``: a side effect outside
    kubetasks, as real tasks have (kubetasks delivers at least once: a task whose worker died
    after the insert runs again)."""
    with psycopg.connect(os.environ["KUBETASKS_DATABASE_URL"], connect_timeout=5) as conn:
        conn.execute("INSERT INTO page_views (task_id, page, pod) VALUES (%s, %s, %s)",
                     (context.task_result.id, page, os.environ.get("POD_NAME", "local")))
