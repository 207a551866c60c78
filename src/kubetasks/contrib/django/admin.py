"""Tasks in Django's admin: list them, filter by queue and state, read their errors, and retry
or cancel them. The view is read-only; retry and cancel go through the store's functions (the
same as ``kubetasks cancel``), on the backend's database, never by saving a row."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.utils.html import format_html, format_html_join

from kubetasks.contrib.django.database import kubetasks_backends, raw_connection
from kubetasks.contrib.django.models import Task
from kubetasks.exceptions import KubeTasksError
from kubetasks.store import Store

try:  # Django 6
    from django.tasks import task_backends
except ImportError:  # the django-tasks backport
    from django_tasks import task_backends


def tasks_database() -> str | None:
    """The ``DATABASES`` alias of the first KubeTasksBackend (None: it has a URL of its own)."""
    _, params = next(kubetasks_backends())
    database = params.get("OPTIONS", {}).get("DATABASE")
    return None if database is None else str(database)


def store_and_connection() -> tuple[Store, Any]:
    """The first KubeTasksBackend's store, with Django's connection when it enqueues on one."""
    alias, _ = next(kubetasks_backends())
    database = tasks_database()
    store: Store = task_backends[alias].kubetasks.store
    return store, raw_connection(database) if database else None


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):  # type: ignore[misc]
    list_display = ("id", "task_name", "queue_name", "state", "priority", "attempts",
                    "enqueued_at", "finished_at")
    list_filter = ("queue_name", "state")
    search_fields = ("task_name",)
    date_hierarchy = "enqueued_at"
    readonly_fields = ("error_list",)
    exclude = ("errors",)
    actions = ("retry_tasks", "cancel_tasks")

    def get_queryset(self, request: Any) -> Any:
        """Read where the backend keeps its tasks, which need not be ``default``."""
        return super().get_queryset(request).using(tasks_database() or "default")

    def has_add_permission(self, request: Any) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        return False  # finished tasks go with `manage.py kubetasks_prune`

    def has_manage_permission(self, request: Any) -> bool:
        """Retry and cancel: for who may change tasks (``kubetasks.change_task``)."""
        return bool(request.user.has_perm("kubetasks.change_task"))

    @admin.display(description="errors")  # type: ignore[untyped-decorator]
    def error_list(self, task: Task) -> str:
        errors = task.errors or []
        if not errors:
            return "-"
        return str(format_html_join("", "<p>attempt {}: {}</p><pre>{}</pre>", (
            (e.get("attempt") or "?", e.get("exception_class_path", ""), e.get("traceback", ""))
            for e in errors)))

    @admin.action(description="Retry the selected failed or cancelled tasks",
                  permissions=["manage"])  # type: ignore[untyped-decorator]
    def retry_tasks(self, request: Any, queryset: Any) -> None:
        store, connection = store_and_connection()
        self._each(request, queryset, lambda i: store.rerun(i, connection=connection),
                   "retried", "not FAILED or CANCELLED")

    @admin.action(description="Cancel the selected tasks (a running one is stopped by its worker)",
                  permissions=["manage"])  # type: ignore[untyped-decorator]
    def cancel_tasks(self, request: Any, queryset: Any) -> None:
        store, connection = store_and_connection()
        by = f"{request.user.get_username()} (Django admin)"
        self._each(request, queryset, lambda i: store.cancel(i, by=by, connection=connection),
                   "cancelled", "finished, or already being cancelled")

    def _each(self, request: Any, queryset: Any, change: Callable[[int], bool], done: str,
              why_not: str) -> None:
        changed: list[int] = []
        skipped: list[int] = []
        for task_id in queryset.values_list("id", flat=True):
            try:
                (changed if change(task_id) else skipped).append(task_id)
            except KubeTasksError as error:  # e.g. its unique key went to a newer task
                self.message_user(request, f"task {task_id}: {error}", messages.ERROR)
        if changed:
            self.message_user(request, f"{len(changed)} tasks {done}", messages.SUCCESS)
        if skipped:
            self.message_user(request, format_html(
                "{} tasks were left as they are ({}): {}", len(skipped), why_not,
                ", ".join(map(str, skipped))), messages.WARNING)
