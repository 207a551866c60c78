"""kubetasks: a Kubernetes-native background task queue on PostgreSQL.

>>> from kubetasks import task
>>> @task(queue_name="emails", max_attempts=3)
... def send_welcome(user_id: int) -> str: ...
>>> result = send_welcome.enqueue(42)
"""

from kubetasks.config import aget_result, configure, get_backend, get_result
from kubetasks.exceptions import (
    ConfigurationError,
    FailNow,
    InvalidTaskError,
    KubeTasksError,
    NotJSONError,
    Retry,
    TaskResultDoesNotExist,
    UnknownTaskError,
)
from kubetasks.result import TaskContext, TaskError, TaskResult, TaskResultStatus
from kubetasks.schedules import Schedule, schedule
from kubetasks.task import Task, task

__all__ = [
    "ConfigurationError",
    "FailNow",
    "InvalidTaskError",
    "KubeTasksError",
    "NotJSONError",
    "Retry",
    "Schedule",
    "Task",
    "TaskContext",
    "TaskError",
    "TaskResult",
    "TaskResultDoesNotExist",
    "TaskResultStatus",
    "UnknownTaskError",
    "aget_result",
    "configure",
    "get_backend",
    "get_result",
    "schedule",
    "task",
]
