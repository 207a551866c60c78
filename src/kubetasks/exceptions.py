"""Exceptions raised by kubetasks.

``KubeTasksError`` is the base class to catch; do not raise it directly. Every message names
the value that was wrong and what would have been accepted.
"""

from __future__ import annotations

from typing import Any


class KubeTasksError(Exception):
    """Base class of every kubetasks error. Catch it; do not raise it directly."""


class InvalidTaskError(KubeTasksError, ValueError):
    """A task definition or an enqueue call was given a value kubetasks cannot accept.

    Raised before anything is written, so a failed enqueue leaves no task behind.
    """


class DuplicateTaskError(KubeTasksError):
    """An enqueue with ``using(unique_key=..., unique_conflict="raise")`` found the key held
    by a live task, which is ``existing`` (a ``TaskResult``; None where it is not known, as for
    a FAILED task run again while a newer one holds its key). Nothing of that call was
    written."""

    def __init__(self, message: str, *, existing: Any) -> None:
        super().__init__(message)
        self.existing = existing


class TaskResultDoesNotExist(KubeTasksError, LookupError):
    """No task with the given id exists (it may have been pruned)."""


class ConfigurationError(KubeTasksError):
    """The backend or the database is not configured the way an operation needs."""


class UnknownTaskError(KubeTasksError):
    """A stored task names a task that the worker did not import.

    Workers only run tasks registered by the modules given to ``--import``; they never import
    a module named by a row in the database.
    """


class Retry(KubeTasksError):
    """Raise from a task to run it again later, counting an attempt.

    ``delay`` (seconds) overrides the task's backoff for this retry.
    """

    def __init__(self, message: str = "retry requested", *, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay


class FailNow(KubeTasksError):
    """Raise from a task to end it FAILED at once, whatever attempts are left."""


class TaskLost(KubeTasksError):
    """The process running a task went away (pod deleted, OOM-killed, node lost)."""


class TaskTimeout(KubeTasksError):
    """A task ran longer than its ``timeout``."""


class NotJSONError(InvalidTaskError, TypeError):
    """A value given to a task (an argument, its context) is not JSON that round-trips.

    Both an ``InvalidTaskError`` and a ``TypeError``: Django's tasks framework raises
    ``TypeError`` for such an argument, so code written for either catches it.
    """
