"""Tasks used by the integration tests (imported by the tests and by worker processes)."""

from __future__ import annotations

from kubetasks import TaskContext, task


@task(queue_name="emails", priority=0, max_attempts=3)
def send_welcome(user_id: int, *, template: str = "default") -> str:
    return f"welcome {user_id} ({template})"


@task(queue_name="reports", batch_size=3)
def reindex(ids: list[int], note: str = "") -> int:
    return sum(ids)


@task(takes_context=True)
def whoami(context: TaskContext, greeting: str) -> dict[str, object]:
    return {"greeting": greeting, "context": context.context, "attempt": context.attempt}
